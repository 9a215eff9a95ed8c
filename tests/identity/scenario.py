"""Hand-written raw tables for identity scenarios, in the raw-table contract's shape.

Each row names its truth person (``_person_id``) so a scenario states who is who; the loader drops
that column before anything reaches the warehouse, as it does for generated data.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import polars as pl

from benchmarks.bench_identity import build_identity as bench_build_identity
from benchmarks.bench_identity import run_dbt
from orchestration.demo.generator import TRUTH_COLUMN, DemoData, generate
from orchestration.demo.warehouse import load_raw
from tests.conftest import AS_OF

TS = pl.Datetime("us", "UTC")
SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "app.users": {
        "id": pl.Int64,
        "email": pl.Utf8,
        "phone": pl.Utf8,
        "first_name": pl.Utf8,
        "last_name": pl.Utf8,
        "plan": pl.Utf8,
        "marketing_opt_in": pl.Boolean,
        "created_at": TS,
        "updated_at": TS,
    },
    "hubspot.contacts": {
        "id": pl.Utf8,
        "email": pl.Utf8,
        "firstname": pl.Utf8,
        "lastname": pl.Utf8,
        "phone": pl.Utf8,
        "company": pl.Utf8,
        "lifecyclestage": pl.Utf8,
        "hs_email_optout": pl.Boolean,
        "createdate": TS,
        "lastmodifieddate": TS,
    },
    "stripe.customers": {
        "id": pl.Utf8,
        "email": pl.Utf8,
        "name": pl.Utf8,
        "phone": pl.Utf8,
        "user_id": pl.Utf8,
        "created": TS,
    },
    "zendesk.users": {
        "id": pl.Int64,
        "email": pl.Utf8,
        "phone": pl.Utf8,
        "name": pl.Utf8,
        "role": pl.Utf8,
        "created_at": TS,
        "updated_at": TS,
    },
    "events.events": {
        "message_id": pl.Utf8,
        "type": pl.Utf8,
        "event": pl.Utf8,
        "name": pl.Utf8,
        "user_id": pl.Utf8,
        "anonymous_id": pl.Utf8,
        "email": pl.Utf8,
        "page_path": pl.Utf8,
        "properties": pl.Utf8,
        "timestamp": TS,
    },
}
# the raw timestamp column each table's rows are dated by
DATED = {
    "app.users": ("created_at", "updated_at"),
    "hubspot.contacts": ("createdate", "lastmodifieddate"),
    "stripe.customers": ("created",),
    "zendesk.users": ("created_at", "updated_at"),
    "events.events": ("timestamp",),
}


def day(n: int) -> dt.datetime:
    """A timestamp ``n`` days before AS_OF: smaller n is more recent."""
    return AS_OF - dt.timedelta(days=n)


def frames(rows: dict[str, list[dict]]) -> DemoData:
    """Raw frames from row dicts: missing columns are null, ``at`` dates every timestamp column."""
    tables = {}
    for table, schema in SCHEMAS.items():
        records = []
        for row in rows.get(table, []):
            row = dict(row)
            at = row.pop("at", AS_OF)
            record = {col: row.pop(col, None) for col in schema}
            for col in DATED[table]:
                record[col] = record[col] or at
            record[TRUTH_COLUMN] = row.pop("person")
            assert not row, f"unknown columns for {table}: {sorted(row)}"
            records.append(record)
        tables[table] = pl.DataFrame(records, schema={**schema, TRUTH_COLUMN: pl.Int64})
    # every other raw table the dbt project reads exists, empty, in the generator's shape
    for table, frame in generate(5, seed=0, as_of=AS_OF).tables.items():
        tables.setdefault(table, frame.clear())
    return DemoData(seed=0, as_of=AS_OF, people=pl.DataFrame(), tables=tables)


NO_TESTS = ("--exclude-resource-type", "test", "unit_test")


def build(db_path: Path, rows: dict[str, list[dict]], *extra: str) -> None:
    """Load the scenario's raw tables and build identity (models, seed, data and unit tests)."""
    load_raw(db_path, frames(rows))
    build_identity(db_path, *extra)


def build_identity(db_path: Path, *extra: str, dbt_vars: dict | None = None) -> None:
    """dbt build of identity resolution on ``db_path`` (data and unit tests included), AS_OF
    pinned: the benchmark's build, so tests and figures come from the same command."""
    bench_build_identity(db_path, *extra, tests=True, dbt_vars=dbt_vars)


def build_dying_after_components(db_path: Path) -> None:
    """An identity run that dies half way: the first pass and the components commit, the
    customers, ranks and records are not redone."""
    run_dbt(
        db_path,
        "build",
        *NO_TESTS,
        "--select",
        "+int_identity__components",
        "--vars",
        json.dumps({"cdp_as_of": AS_OF.strftime("%Y-%m-%d")}),
    )


def query_all(db_path: Path, **queries: str) -> dict[str, list[tuple]]:
    """Each named query's rows, read through one read-only connection."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return {name: con.execute(sql).fetchall() for name, sql in queries.items()}
    finally:
        con.close()
