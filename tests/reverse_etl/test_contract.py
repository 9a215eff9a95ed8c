"""The contract every destination meets, run against each one's vendor-faithful fake.

Sync a segment, change it, break rows, inject 5xx and 429s: in every case the destination ends
holding exactly the consented members with their mapped fields, and every refused row is in
``ops.sync_row_results`` with the destination's own message.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from reverse_etl.engine import run_sync
from reverse_etl.state import connect
from tests.reverse_etl.conftest import (
    MODEL,
    break_emails,
    expected_members,
    make_sync,
    refresh_model,
    sql,
)
from tests.reverse_etl.harness import Harness, canonical, harness_params


@contextlib.contextmanager
def running(h: Harness, monkeypatch, tmp_path: Path, **fake_kwargs):
    server = h.make_server(**fake_kwargs)
    if server is not None:
        server.start()
    try:
        for key, value in h.env(server, tmp_path).items():
            monkeypatch.setenv(key, value)
        yield server
    finally:
        if server is not None:
            server.stop()


def sync_for(h: Harness, **meta):
    return make_sync(h.name, **{**h.meta, **meta})


def expected(db: Path) -> dict:
    return canonical(expected_members(db))


pytestmark = pytest.mark.parametrize("h", harness_params())


def test_full_sync_then_nothing_to_send(h, warehouse, monkeypatch, tmp_path):
    with running(h, monkeypatch, tmp_path) as server:
        sync = sync_for(h)
        first = run_sync(sync, db_path=warehouse)
        assert first.status == "success", first.message
        assert h.held(server, tmp_path) == expected(warehouse)
        assert first.added == len(expected(warehouse))
        second = run_sync(sync, db_path=warehouse)
        assert second.status == "success"
        assert (second.added, second.changed, second.removed, second.api_calls) == (0, 0, 0, 0)


def test_changes_and_leavers_reach_the_destination(h, warehouse, monkeypatch, tmp_path):
    with running(h, monkeypatch, tmp_path) as server:
        sync = sync_for(h)
        run_sync(sync, db_path=warehouse)
        con = connect(warehouse)
        con.execute(
            "update segments.high_value_customers set last_name = last_name || '-Smith' "
            "where customer_id in (select customer_id from segments.high_value_customers "
            "order by customer_id limit 12)"
        )
        con.execute(
            "delete from segments.high_value_customers where customer_id in (select customer_id "
            "from segments.high_value_customers order by customer_id desc limit 12)"
        )
        con.execute(
            "update marts.customers set lifetime_value = lifetime_value + 1, "
            "email_marketing_consent = not email_marketing_consent where customer_id in "
            f"(select customer_id from {MODEL} order by customer_id limit 4 offset 20)"
        )
        refresh_model(con)
        con.close()
        result = run_sync(sync, db_path=warehouse)
        assert result.status == "success", result.message
        assert result.changed > 0 and result.removed > 0
        assert h.held(server, tmp_path) == expected(warehouse)


def test_faults_rate_limits_and_invalid_rows(h, warehouse, monkeypatch, tmp_path):
    """10% injected 5xx, a fake allowing 4 requests/s while the sync allows itself 40/s."""
    if not h.http:
        pytest.skip("no HTTP: nothing to fault or rate limit")
    broken = break_emails(warehouse, 3) if h.row_error_text else []
    with running(h, monkeypatch, tmp_path, fault_rate=0.1, rate_limit=(4, 1.0), seed=3) as server:
        sync = sync_for(h, batch_size=10, rate_limit={"requests": 40, "per_seconds": 1})
        result = run_sync(sync, db_path=warehouse)
        want = {k: v for k, v in expected(warehouse).items() if k not in broken}
        assert h.held(server, tmp_path) == want
        assert result.failed == len(broken)
        assert any(c.status == 429 for c in server.calls)
        assert any(c.status >= 500 for c in server.calls)
        errors = sql(
            warehouse,
            "select row_key, error from ops.sync_row_results where run_id = ? "
            "and status = 'failed'",
            [result.run_id],
        )
        assert sorted(k for k, _ in errors) == sorted(broken)
        assert all(h.row_error_text in e for _, e in errors)


def test_absent_credentials_skip_the_sync(h, warehouse, monkeypatch, tmp_path):
    if h.credential_env is None:
        pytest.skip("needs no credentials")
    monkeypatch.delenv(h.credential_env, raising=False)
    result = run_sync(sync_for(h), db_path=warehouse)
    assert result.status == "skipped"
    assert h.credential_env in result.message


def test_dry_run_estimates_the_calls_the_real_run_makes(h, warehouse, monkeypatch, tmp_path):
    with running(h, monkeypatch, tmp_path) as server:
        sync = sync_for(h, batch_size=10)
        plan = run_sync(sync, db_path=warehouse, dry_run=True)
        assert h.held(server, tmp_path) == {}
        real = run_sync(sync, db_path=warehouse)
        assert real.added == plan.added
        setup = len(server.calls) - plan.api_calls if server is not None else 0
        assert real.api_calls == plan.api_calls + setup
        assert 0 <= setup <= 4  # finding or creating the list / audience / tag


def test_syncs_to_one_account_share_its_rate_limit(h, small_demo, tmp_path, monkeypatch):
    """Two syncs (two warehouses) to one account, at once: together they stay within its limit."""
    if h.name not in ("hubspot", "mailchimp"):
        pytest.skip("the limiter is shared code; these two also create a list or tag on first use")
    from tests.reverse_etl.conftest import write_warehouse

    dbs = []
    for i in range(2):
        db = tmp_path / f"w{i}" / "cdp.duckdb"
        db.parent.mkdir()
        write_warehouse(db, small_demo)
        dbs.append(db)
    with running(h, monkeypatch, tmp_path, rate_limit=(6, 1.0)) as server:
        limit = {"requests": 6, "per_seconds": 1}
        syncs = [sync_for(h, name=f"shared_{i}", batch_size=8, rate_limit=limit) for i in range(2)]
        results = [None, None]

        def go(i: int) -> None:
            results[i] = run_sync(syncs[i], db_path=dbs[i])

        threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.status for r in results] == ["success", "success"]
        assert not [c for c in server.calls if c.status == 429]
        assert sum(r.api_calls for r in results) == len(server.calls) > 6
