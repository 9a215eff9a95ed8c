"""Kill a running sync (SIGKILL, at random points, repeatedly) and rerun it.

The run must end with the destination holding exactly the consented segment, every row
acknowledged once, and no row sent again after the batch that carried it was acknowledged
(the fake's write log against the ``at`` of the row's recorded success).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from reverse_etl.config import SyncConfig
from reverse_etl.engine import run_sync
from reverse_etl.state import connect
from tests.conftest import REPO_ROOT
from tests.reverse_etl.conftest import FIELDS, MODEL, refresh_model, sql
from tests.reverse_etl.harness import HARNESSES
from tests.reverse_etl.test_contract import expected, running

KILLS = 3
WRITE_OPS = {"hubspot": {"upsert"}, "mailchimp": {"subscribe"}, "klaviyo": {"import"}}


def _meta(h) -> dict:
    return {
        "destination": h.name,
        "mode": "mirror",
        "identity_key": "email",
        "fields": h.meta.get("fields") or FIELDS,
        "purpose": "email_marketing",
        "model": MODEL,
        "batch_size": 3,
        "rate_limit": {"requests": 40, "per_seconds": 1},
        "options": h.meta.get("options", {}),
    }


def _kill_after(proc: subprocess.Popen, server, writes: int, timeout: float = 30) -> bool:
    """SIGKILL once the fake has answered ``writes`` more write calls; False if it finished."""
    target = server.count("POST") + server.count("PUT") + writes
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if server.count("POST") + server.count("PUT") >= target:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    proc.kill()
    raise AssertionError("the sync made no progress")


@pytest.mark.parametrize("h", [h for h in HARNESSES if h.name in WRITE_OPS], ids=lambda h: h.name)
def test_killed_syncs_resume_without_resending_acknowledged_rows(
    h, warehouse, monkeypatch, tmp_path
):
    rng = random.Random(f"kill-{h.name}")
    meta = _meta(h)
    name = f"kill_{h.name}"
    with running(h, monkeypatch, tmp_path) as server:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        kills = 0
        for round_no in range(KILLS):
            if round_no == KILLS // 2:  # members leave while the sync is half done
                con = connect(warehouse)
                con.execute(
                    "delete from segments.high_value_customers where customer_id in "
                    "(select customer_id from segments.high_value_customers "
                    "order by customer_id desc limit 9)"
                )
                refresh_model(con)
                con.close()
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.reverse_etl.sync_worker",
                    str(warehouse),
                    name,
                    json.dumps(meta),
                ],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            kills += _kill_after(proc, server, rng.randint(1, 6))
        assert kills >= KILLS - 1  # the sync was really interrupted, repeatedly

        final = run_sync(SyncConfig.from_meta(name, meta), db_path=warehouse)
        assert final.status == "success", final.message
        assert h.held(server, tmp_path) == expected(warehouse)

        interrupted = sql(
            warehouse,
            "select count(*) from ops.sync_runs where sync_name = ? and status = 'interrupted'",
            [name],
        )[0][0]
        assert interrupted >= kills - 1

        acks = sql(
            warehouse,
            'select lower(row_key), operation, count(*), min("at") from ops.sync_row_results '
            "where sync_name = ? and status = 'success' group by all",
            [name],
        )
        assert all(n == 1 for _, _, n, _ in acks), "a row was acknowledged twice"
        acked_at: dict[str, float] = {}
        for key, op, _, at in acks:
            if op in ("add", "change"):
                stamp = at.replace(tzinfo=dt.UTC).timestamp()
                acked_at[key] = min(stamp, acked_at.get(key, stamp))
        late = [
            (op, email)
            for at, op, email in server.write_log
            if op in WRITE_OPS[h.name] and email in acked_at and at > acked_at[email]
        ]
        assert late == [], f"rows sent again after their batch was acknowledged: {late[:5]}"
