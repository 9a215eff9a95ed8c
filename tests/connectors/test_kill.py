"""Kill ingest with SIGKILL at random moments, rerun, and get exactly the source's records.

The child process runs ``ingest`` with small pages and small batches, so a run is many
commits long and a kill lands between, during or inside them. The vendor fakes live in this
(test) process and survive the kills; the warehouse file must too.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sys
import time
from pathlib import Path

import duckdb
import pytest

from orchestration.demo.sources import write_app_sqlite, write_events
from tests.connectors.fakes import serve
from tests.connectors.helpers import assert_raw_equals_source, scalar

KILLS_PER_SOURCE = 3
TABLES = {
    "hubspot": ["hubspot.contacts", "hubspot.companies"],
    "stripe": ["stripe.customers", "stripe.charges"],
    "zendesk": ["zendesk.users", "zendesk.tickets"],
    "events": ["events.events"],
    "app": ["app.users", "app.orders"],
}
# a fork server with the connector stack imported starts a run in milliseconds, not a second
CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["connectors.ingest", "requests", "sqlite3"])


def child_run(source: str, env: dict[str, str], ready) -> None:
    """The killed process: a small-page, small-batch ingest of one source."""
    os.environ.clear()
    os.environ.update(env)
    from connectors import hubspot, stripe, zendesk
    from connectors.app import AppConnector
    from connectors.ingest import ingest

    hubspot.LIST_LIMIT = stripe.PAGE_LIMIT = zendesk.PER_PAGE = 10
    AppConnector.page_rows = 20
    ready.set()
    results = ingest(sources=[source])
    sys.exit(0 if all(r.status == "ok" for r in results) else 1)


def _start(source: str) -> multiprocessing.Process:
    # HTTP pages hold 10 records; local sources are read in batches of this many records
    env = {
        **os.environ,
        "CDP_INGEST_BATCH_ROWS": "10" if source in ("hubspot", "stripe", "zendesk") else "60",
    }
    ready = CONTEXT.Event()
    proc = CONTEXT.Process(target=child_run, args=(source, env, ready), daemon=True)
    proc.start()
    assert ready.wait(timeout=30), "the ingest process did not start"
    return proc


def _loaded(db_path: Path, source: str) -> int:
    """Rows committed so far in the source's raw tables (0 before the first commit)."""
    total = 0
    for table in TABLES[source]:
        schema, name = table.split(".")
        try:
            total += scalar(db_path, f"select count(*) from raw_{schema}.{name}")
        except duckdb.Error:
            pass
    return total


def kill_and_rerun(source: str, db_path: Path, total: int, seed: int) -> list[int]:
    """Kill runs at random moments, ``KILLS_PER_SOURCE`` times or more, then let one finish.

    The moments are random within a window that adapts to the machine's speed (wider after a
    kill before the first commit, narrower after one past the last), until at least one
    kill has landed mid-load. Returns the rows committed at each kill.
    """
    rng = random.Random(seed)
    window = 0.3
    progress: list[int] = []
    for _ in range(6 * KILLS_PER_SOURCE):
        if len(progress) >= KILLS_PER_SOURCE and any(0 < p < total for p in progress):
            break
        proc = _start(source)
        time.sleep(rng.uniform(0.02, window))
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
        if proc.exitcode != -signal.SIGKILL:
            window /= 1.5  # the run ended before the kill
            continue
        progress.append(_loaded(db_path, source))
        if progress[-1] == 0:
            window *= 1.5  # killed before the first commit
        elif progress[-1] >= total:
            # killed after the last commit: nothing is left to interrupt in this warehouse, so
            # start the next attempt from an empty one (a fast machine would never land mid-load)
            window /= 1.5
            for stale in (db_path, db_path.with_name(db_path.name + ".wal")):
                stale.unlink(missing_ok=True)
    final = _start(source)
    final.join(timeout=60)
    assert final.exitcode == 0, f"the run after the kills failed ({source})"
    return progress


@pytest.mark.parametrize("vendor", ["hubspot", "stripe", "zendesk"])
def test_killed_http_ingest_resumes_exactly(vendor, small_demo, cdp_env, monkeypatch):
    with serve(vendor, small_demo, monkeypatch):
        total = sum(small_demo.tables[t].height for t in TABLES[vendor])
        progress = kill_and_rerun(vendor, cdp_env, total, seed=len(vendor))
        assert len(progress) >= KILLS_PER_SOURCE, progress
        assert any(0 < done < total for done in progress), progress  # killed mid-load
        for table in TABLES[vendor]:
            assert_raw_equals_source(cdp_env, small_demo, table)


def test_killed_events_and_app_ingest_resume_exactly(small_demo, cdp_env, tmp_path, monkeypatch):
    write_events(small_demo, tmp_path / "events", n_files=6, n_duplicates=3)
    monkeypatch.setenv("CDP_EVENTS_DIR", str(tmp_path / "events"))
    monkeypatch.setenv("CDP_APP_DB_URL", write_app_sqlite(small_demo, tmp_path / "app.sqlite"))
    for source in ("events", "app"):
        total = sum(small_demo.tables[t].height for t in TABLES[source])
        progress = kill_and_rerun(source, cdp_env, total, seed=len(source))
        assert len(progress) >= KILLS_PER_SOURCE, (source, progress)
        assert any(0 < done < total for done in progress), (source, progress)
        for table in TABLES[source]:
            assert_raw_equals_source(cdp_env, small_demo, table)
    # nothing was quarantined along the way: every kill left whole batches only
    assert scalar(cdp_env, "select count(*) from ops.quarantine") == 0
