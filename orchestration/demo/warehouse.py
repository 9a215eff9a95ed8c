"""Write the generator's frames straight into ``raw_<source>.<stream>`` tables.

Tests of the dbt project and the identity benchmarks use this to start from known raw tables
without going through the connectors (which have tests of their own). The shape is the raw-table
contract of docs/architecture.md: typed columns, ``_record`` JSON, ``_loaded_at``, ``_batch_id``.
The ground-truth column never reaches the warehouse.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb
import polars as pl

from orchestration.demo.generator import DemoData


def load_raw(
    db_path: str | Path, data: DemoData, tables: list[str] | None = None, append: bool = False
) -> dict[str, int]:
    """Replace the raw tables with the generator's records; returns rows per table.

    With ``append`` the records are inserted into the existing tables as a new load (a later
    ``_loaded_at``, a new ``_batch_id``), as a connector's incremental run does; the records
    already there keep theirs. Incremental identity tests and benchmarks use it.
    """
    batch_id = f"{'increment' if append else 'demo'}-{uuid.uuid4().hex[:12]}"
    statement = "insert into {table} by name" if append else "create or replace table {table} as"
    counts: dict[str, int] = {}
    con = duckdb.connect(str(db_path))
    try:
        for name in tables or list(data.tables):
            source, stream = name.split(".")
            frame = data.source(name)
            frame = frame.with_columns(pl.col(pl.Datetime).dt.replace_time_zone(None))
            arrow = frame.to_arrow()
            con.execute(f"create schema if not exists raw_{source}")
            con.register("_frame", arrow)
            into = statement.format(table=f"raw_{source}.{stream}")
            con.execute(
                f"""
                {into}
                select f.*, to_json(f)::varchar as _record,
                       cast(now() at time zone 'UTC' as timestamp) as _loaded_at,
                       '{batch_id}' as _batch_id
                from _frame as f
                """
            )
            con.unregister("_frame")
            counts[name] = frame.height
    finally:
        con.close()
    return counts
