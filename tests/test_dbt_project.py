"""The whole dbt project builds on a fresh DuckDB from generated raw tables, docs included."""

from __future__ import annotations

import json

import duckdb
import pytest

from orchestration.demo.warehouse import load_raw
from tests.conftest import AS_OF, run_dbt


@pytest.fixture(scope="module")
def built(tmp_path_factory, small_demo):
    db_path = tmp_path_factory.mktemp("dbt") / "cdp.duckdb"
    load_raw(db_path, small_demo)
    run_dbt(db_path, "build", "--vars", json.dumps({"cdp_as_of": AS_OF.strftime("%Y-%m-%d")}))
    return db_path


def test_staging_keeps_every_raw_record(built, small_demo) -> None:
    con = duckdb.connect(str(built), read_only=True)
    pairs = {
        "app.users": "stg_app__users",
        "app.orders": "stg_app__orders",
        "hubspot.contacts": "stg_hubspot__contacts",
        "stripe.customers": "stg_stripe__customers",
        "stripe.charges": "stg_stripe__charges",
        "zendesk.users": "stg_zendesk__users",
        "zendesk.tickets": "stg_zendesk__tickets",
        "events.events": "stg_events__events",
    }
    for raw, model in pairs.items():
        count = con.execute(f"select count(*) from staging.{model}").fetchone()[0]
        assert count == small_demo.tables[raw].height, model


def test_custom_schemas_are_literal(built) -> None:
    con = duckdb.connect(str(built), read_only=True)
    schemas = {r[0] for r in con.execute("select schema_name from duckdb_schemas()").fetchall()}
    assert {"staging", "raw_app", "raw_events"} <= schemas
    assert not any(s.startswith("main_") for s in schemas)


def test_docs_generate(built) -> None:
    proc = run_dbt(built, "docs", "generate")
    assert "Catalog written" in proc.stdout


def test_dbt_checkpoints_do_not_vacuum(built) -> None:
    """dbt's connections run with DuckDB's vacuum off (profiles.yml): an incremental model's
    scattered delete+insert would otherwise rewrite most of a large table at each checkpoint."""
    proc = run_dbt(
        built,
        "show",
        "--inline",
        "select current_setting('max_vacuum_tasks') as max_vacuum_tasks",
        "--output",
        "json",
        "--log-format",
        "text",
    )
    start = proc.stdout.index("{")
    shown = json.loads(proc.stdout[start : proc.stdout.rindex("}") + 1])
    assert shown["show"] == [{"max_vacuum_tasks": 0}]
    # a connection of its own (connectors, forget) keeps DuckDB's default
    con = duckdb.connect(str(built), read_only=True)
    assert con.execute("select current_setting('max_vacuum_tasks')").fetchone()[0] > 0
