"""Retention deletes exactly the rows past their source's period, and records it."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from connectors.loader import connect
from orchestration.demo.warehouse import load_raw
from orchestration.privacy.retention import DEFAULT_CONFIG, apply_retention, load_config, policies
from tests.conftest import AS_OF

NOW = AS_OF.replace(tzinfo=None)


def _older(frame: pl.DataFrame, column: str, days: int) -> int:
    cutoff = AS_OF - dt.timedelta(days=days)
    return frame.filter(pl.col(column) < cutoff).height


def test_retention_deletes_rows_older_than_the_period(tmp_path, small_demo) -> None:
    db = tmp_path / "cdp.duckdb"
    load_raw(db, small_demo)
    con = connect(db)
    # the stripe rows arrived long ago: measured by _loaded_at, the default
    con.execute(
        "update raw_stripe.customers set _loaded_at = ? where id like '%a'",
        [NOW - dt.timedelta(days=40)],
    )
    old_customers = con.execute(
        "select count(*) from raw_stripe.customers where id like '%a'"
    ).fetchone()[0]
    con.close()
    config = {
        "default": {"days": None, "column": "_loaded_at"},
        "sources": {
            "events": {"days": 30, "streams": {"events": {"column": "timestamp"}}},
            "zendesk": {"days": 100, "streams": {"tickets": {"column": "updated_at"}}},
            "stripe": {"days": 35},
            "app": {"days": None},
        },
    }
    results = {r.table: r for r in apply_retention(db, config=config, now=NOW)}

    events = small_demo.tables["events.events"]
    tickets = small_demo.tables["zendesk.tickets"]
    assert results["raw_events.events"].rows_deleted == _older(events, "timestamp", 30) > 0
    assert results["raw_zendesk.tickets"].rows_deleted == _older(tickets, "updated_at", 100) > 0
    assert results["raw_stripe.customers"].rows_deleted == old_customers > 0
    assert "raw_app.users" not in results  # kept forever

    con = connect(db, read_only=True)
    left = con.execute("select count(*), min(timestamp) from raw_events.events").fetchone()
    assert left[0] == events.height - results["raw_events.events"].rows_deleted
    assert left[1] >= NOW - dt.timedelta(days=30)
    assert (
        con.execute("select count(*) from raw_app.users").fetchone()[0]
        == small_demo.tables["app.users"].height
    )
    audit = con.execute(
        "select table_name, rows_affected from ops.privacy_audit where step = 'retention' "
        "and table_name is not null"
    ).fetchall()
    assert dict(audit) == {t: r.rows_deleted for t, r in results.items() if r.rows_deleted}
    con.close()

    # a second run the same day finds nothing more to delete
    again = apply_retention(db, config=config, now=NOW)
    assert sum(r.rows_deleted for r in again) == 0


def test_shipped_config_is_valid_and_covers_quarantine() -> None:
    config = load_config(DEFAULT_CONFIG)
    found = {
        p.table: p
        for p in policies(config, ["raw_events.events", "raw_app.users", "ops.quarantine"])
    }
    assert found["raw_events.events"].column == "timestamp"
    assert "raw_app.users" not in found
    assert found["ops.quarantine"].column == "quarantined_at"


def test_bad_config_is_refused(tmp_path, small_demo) -> None:
    with pytest.raises(ValueError, match="days"):
        policies({"sources": {"events": {"days": 0}}}, ["raw_events.events"])
    db = tmp_path / "cdp.duckdb"
    load_raw(db, small_demo, tables=["events.events"])
    with pytest.raises(ValueError, match="no column"):
        apply_retention(db, config={"sources": {"events": {"days": 5, "column": "nope"}}}, now=NOW)
    con = connect(db, read_only=True)  # nothing was deleted by the refused run
    assert (
        con.execute("select count(*) from raw_events.events").fetchone()[0]
        == small_demo.tables["events.events"].height
    )
