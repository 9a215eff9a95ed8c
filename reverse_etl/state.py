"""The warehouse tables that make syncs auditable and resumable (schema ``cdp``).

- ``sync_runs``: one row per run with its figures and final status.
- ``sync_row_results``: every row's outcome per run (added, changed, removed, skipped, failed,
  with the destination's error message), so nobody has to read logs to know why a row is missing.
- ``sync_state``: per sync and row key, the hash of the mapped fields the destination last
  acknowledged (and the destination's record id). The diff is computed against it, and it is
  advanced per acknowledged batch, in the same transaction as that batch's row results.
"""

from __future__ import annotations

import duckdb

from connectors.loader import connect as _connect


def connect(db_path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """The warehouse attached under a fixed catalog name, so ``cdp.<table>`` is never ambiguous
    with the catalog DuckDB would otherwise name after a ``cdp.duckdb`` file."""
    return _connect(db_path, read_only=read_only)


DDL = """
create schema if not exists ops;
create table if not exists ops.sync_runs (
    run_id varchar primary key,
    sync_name varchar not null,
    destination varchar,
    mode varchar,
    status varchar not null,
    started_at timestamp not null,
    finished_at timestamp,
    rows_added bigint default 0,
    rows_changed bigint default 0,
    rows_removed bigint default 0,
    rows_failed bigint default 0,
    rows_skipped bigint default 0,
    api_calls bigint default 0,
    duration_s double,
    message varchar
);
create table if not exists ops.sync_row_results (
    run_id varchar not null,
    sync_name varchar not null,
    row_key varchar,
    operation varchar not null,
    status varchar not null,
    error varchar,
    "at" timestamp not null  -- quoted: AT is a keyword in DuckDB 2
);
create table if not exists ops.sync_state (
    sync_name varchar not null,
    row_key varchar not null,
    fields_hash varchar not null,
    dest_id varchar,
    synced_at timestamp not null,
    primary key (sync_name, row_key)
);
"""


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables "
            "where table_catalog = current_database() and table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()[0][0]
    )


def columns_of(con: duckdb.DuckDBPyConnection, relation: str) -> list[str]:
    schema, table = relation.split(".", 1)
    return [
        r[0]
        for r in con.execute(
            "select column_name from information_schema.columns "
            "where table_catalog = current_database() and table_schema = ? and table_name = ? "
            "order by ordinal_position",
            [schema, table],
        ).fetchall()
    ]
