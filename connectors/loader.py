"""The one place that writes to the warehouse: typed raw tables, quarantine, cursors, run figures.

A batch arrives as raw record texts. DuckDB parses and types them in bulk (vectorized JSON
extraction over an Arrow column: no row-by-row inserts), sorts out the records it cannot use
into ``ops.quarantine`` with the reason, drops records whose identifiers are on the suppression
list, upserts the rest on the primary key, and writes the stream's new cursor, all in one
transaction. A process killed at any point leaves either the whole batch with its cursor or
neither, so the next run resumes exactly where the last commit left off.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from connectors.base import Column, StreamSpec
from connectors.suppression import sql_hash

log = logging.getLogger(__name__)

DUCKDB_TYPES = {
    "varchar": "varchar",
    "bigint": "bigint",
    "double": "double",
    "boolean": "boolean",
    "timestamp": "timestamp",
    "epoch": "timestamp",
    "json": "varchar",
}

OPERATIONAL_DDL = [
    "create schema if not exists {ops}",
    """create table if not exists {ops}.connector_state (
        source varchar not null, stream varchar not null, cursor varchar,
        updated_at timestamp not null)""",
    """create table if not exists {ops}.quarantine (
        source varchar not null, stream varchar not null, raw_record varchar,
        reason varchar not null, batch_id varchar not null, quarantined_at timestamp not null)""",
    """create table if not exists {ops}.ingest_runs (
        run_id varchar not null, source varchar not null, stream varchar not null,
        status varchar not null, started_at timestamp not null, finished_at timestamp not null,
        rows_read bigint, rows_loaded bigint, rows_quarantined bigint, rows_suppressed bigint,
        pages bigint, retries bigint, duration_s double, message varchar)""",
]

RUN_FIGURES = (
    "rows_read",
    "rows_loaded",
    "rows_quarantined",
    "rows_suppressed",
    "pages",
    "retries",
    "duration_s",
    "message",
)

_NOW = "cast(now() at time zone 'UTC' as timestamp)"


def q(name: str) -> str:
    """Quote an identifier for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _typed(column: Column, raw: str) -> str:
    """SQL turning the extracted text ``raw`` into the column's type; NULL when it cannot."""
    kind = column.kind
    if kind == "varchar":
        return raw
    if kind == "timestamp":
        return f"(try_cast({raw} as timestamptz) at time zone 'UTC')"
    if kind == "epoch":
        return f"(to_timestamp(try_cast({raw} as double)) at time zone 'UTC')"
    return f"try_cast({raw} as {DUCKDB_TYPES[kind]})"


@dataclass
class BatchFigures:
    loaded: int = 0
    quarantined: int = 0
    suppressed: int = 0


def connect(db_path: str | Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A separate connection to the warehouse, attached under the alias ``warehouse``.

    DuckDB names a file's catalog after the file; attaching under one fixed alias makes every
    connection see the same names whatever the file is called. For ad-hoc reads (tests, tools)
    while no other connection of this process has the file open (DuckDB refuses a second
    instance of a file).
    """
    con = duckdb.connect()
    path = str(db_path).replace("'", "''")
    con.execute(f"attach '{path}' as warehouse" + (" (read_only)" if read_only else ""))
    con.execute("use warehouse")
    con.execute("set TimeZone = 'UTC'")
    return con


class Warehouse:
    """A connection to the warehouse file with the connector tables in place.

    It is an ordinary ``duckdb.connect(path)``, so other code of the same process may hold
    connections to the file too; every name it writes is qualified with the file's catalog.
    """

    def __init__(self, db_path: str | Path) -> None:
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(db_path)
        self.con = duckdb.connect(self.path)
        self.con.execute("set TimeZone = 'UTC'")
        self.catalog = self.con.execute("select current_database()").fetchone()[0]
        self.ops = f"{q(self.catalog)}.ops"
        for ddl in OPERATIONAL_DDL:
            self.con.execute(ddl.format(ops=self.ops))
        self._ready: set[tuple[str, str]] = set()

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state -------------------------------------------------------------------------------
    def get_state(self, source: str, stream: str) -> dict[str, Any] | None:
        row = self.con.execute(
            f"select cursor from {self.ops}.connector_state where source = ? and stream = ?",
            [source, stream],
        ).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def _put_state(self, source: str, stream: str, state: dict[str, Any]) -> None:
        self.con.execute(
            f"delete from {self.ops}.connector_state where source = ? and stream = ?",
            [source, stream],
        )
        self.con.execute(
            f"insert into {self.ops}.connector_state values (?, ?, ?, {_NOW})",
            [source, stream, json.dumps(state, sort_keys=True, default=str)],
        )

    # -- tables ------------------------------------------------------------------------------
    def table(self, source: str, spec: StreamSpec) -> str:
        return f"{q(self.catalog)}.{q('raw_' + source)}.{q(spec.name)}"

    def ensure_table(self, source: str, spec: StreamSpec) -> None:
        """Create the raw table, or add typed columns a newer connector version models."""
        if (source, spec.name) in self._ready:
            return
        schema = "raw_" + source
        self.con.execute(f"create schema if not exists {q(self.catalog)}.{q(schema)}")
        cols = [f"{q(c.name)} {DUCKDB_TYPES[c.kind]}" for c in spec.columns]
        cols += ["_record varchar", "_loaded_at timestamp", "_batch_id varchar"]
        self.con.execute(
            f"create table if not exists {self.table(source, spec)} ({', '.join(cols)})"
        )
        existing = {
            r[0]
            for r in self.con.execute(
                "select column_name from duckdb_columns() "
                "where database_name = ? and schema_name = ? and table_name = ?",
                [self.catalog, schema, spec.name],
            ).fetchall()
        }
        for c in spec.columns:
            if c.name not in existing:
                self.con.execute(
                    f"alter table {self.table(source, spec)} "
                    f"add column {q(c.name)} {DUCKDB_TYPES[c.kind]}"
                )
        self._ready.add((source, spec.name))

    def _suppression_filter(self, spec: StreamSpec) -> str | None:
        """SQL that is true for a staged record whose identifiers are suppressed (if any list)."""
        if not spec.identifiers:
            return None
        exists = self.con.execute(
            "select count(*) from duckdb_tables() where database_name = ? "
            "and schema_name = 'ops' and table_name = 'suppression_list'",
            [self.catalog],
        ).fetchone()[0]
        if not exists:
            return None
        listed = f"select id_value_hash from {self.ops}.suppression_list where id_type = "
        terms = [
            f"{sql_hash(id_type, q(column))} in ({listed}{_sql_str(id_type)})"
            for column, id_type in spec.identifiers.items()
        ]
        return "coalesce(" + " or ".join(terms) + ", false)"

    # -- the batch ---------------------------------------------------------------------------
    def load_batch(
        self,
        source: str,
        spec: StreamSpec,
        records: list[str],
        state: dict[str, Any] | None,
        batch_id: str,
        rejects: list[tuple[str, str]] | None = None,
        objects: bool = False,
    ) -> BatchFigures:
        """Quarantine, type and upsert ``records`` and store ``state``: one transaction."""
        self.ensure_table(source, spec)
        figures = BatchFigures()
        con = self.con
        con.execute("begin transaction")
        try:
            if records:
                figures = self._stage_and_write(source, spec, records, batch_id, objects)
            for raw, reason in rejects or []:
                con.execute(
                    f"insert into {self.ops}.quarantine values (?, ?, ?, ?, ?, {_NOW})",
                    [source, spec.name, raw, reason, batch_id],
                )
                figures.quarantined += 1
            if state is not None:
                self._put_state(source, spec.name, state)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        finally:
            con.execute("drop table if exists temp._stage")
            try:
                con.unregister("_arrow")
            except duckdb.Error:
                pass
        return figures

    def _stage_and_write(
        self, source: str, spec: StreamSpec, records: list[str], batch_id: str, objects: bool
    ) -> BatchFigures:
        con = self.con
        arrow = pa.table(
            {
                "_ord": pa.array(range(len(records)), pa.int64()),
                "_record": pa.array(records, pa.large_string()),
            }
        )
        con.register("_arrow", arrow)
        batch, src, strm = _sql_str(batch_id), _sql_str(source), _sql_str(spec.name)
        scalar = [c for c in spec.columns if c.kind != "json"]
        paths = ", ".join(_sql_str(c.json_path) for c in scalar)
        raw_cols = ", ".join(f"_v[{i + 1}] as {q(c.name + '__raw')}" for i, c in enumerate(scalar))
        typed_cols = ", ".join(
            f"case when _ok then json_extract(_record, {_sql_str(c.json_path)})::varchar end "
            f"as {q(c.name)}"
            if c.kind == "json"
            else f"{_typed(c, q(c.name + '__raw'))} as {q(c.name)}"
            for c in spec.columns
        )
        pk = spec.primary_key
        checks = [f"case when {q(pk)} is null then 'missing primary key {pk}' end"]
        checks += [
            f"case when {q(c.name + '__raw')} is not null and {q(c.name)} is null then "
            f"'{c.name}: cannot read ' || left({q(c.name + '__raw')}, 60) || ' as {c.kind}' end"
            for c in scalar
            if c.kind != "varchar"
        ]
        validity = (
            "true as _valid, true as _ok"
            if objects
            else "json_valid(_record) as _valid, case when json_valid(_record) "
            "then json_type(_record) = 'OBJECT' else false end as _ok"
        )
        # one pass: parse check, extraction (only of parsed objects), typing, reasons
        con.execute(
            f"""create temp table _stage as
            with parsed as (
                select _ord, cast(_record as varchar) as _record,
                    {validity}
                from _arrow
            ),
            extracted as (
                select *, case when _ok then json_extract_string(_record, [{paths}]) end as _v
                from parsed
            ),
            typed as (select _ord, _record, _valid, _ok, {raw_cols} from extracted)
            select _ord, _record, {typed_cols},
                case when not _valid then 'invalid JSON'
                    when not _ok then 'not a JSON object'
                    else nullif(concat_ws('; ', {", ".join(checks)}), '') end as _reason
            from typed"""
        )
        quarantined = con.execute(
            f"insert into {self.ops}.quarantine select {src}, {strm}, _record, _reason, {batch}, "
            f"{_NOW} from _stage where _reason is not null"
        ).fetchone()[0]

        # from here _stage is whittled down to the rows to write (deletes copy nothing)
        con.execute("delete from _stage where _reason is not null")
        suppressed_sql = self._suppression_filter(spec)
        suppressed = 0
        if suppressed_sql:
            suppressed = con.execute(f"delete from _stage where {suppressed_sql}").fetchone()[0]
        # one version per key in a batch: the latest for records that change, the first for events
        pick = "max" if spec.on_conflict == "replace" else "min"
        con.execute(
            f"delete from _stage where _ord not in "
            f"(select {pick}(_ord) from _stage group by {q(pk)})"
        )
        table = self.table(source, spec)
        names = ", ".join(q(c.name) for c in spec.columns)
        if spec.on_conflict == "replace":
            # a record re-read unchanged (cursor ties, resumed pages) is not loaded again: its
            # _loaded_at and _batch_id keep saying when it really arrived
            con.execute(
                f"delete from _stage where exists (select 1 from {table} as t "
                f"where t.{q(pk)} = _stage.{q(pk)} and t._record = _stage._record)"
            )
            con.execute(f"delete from {table} where {q(pk)} in (select {q(pk)} from _stage)")
            where = ""
        else:
            where = f"where {q(pk)} not in (select {q(pk)} from {table} where {q(pk)} is not null)"
        loaded = con.execute(
            f"insert into {table} ({names}, _record, _loaded_at, _batch_id) "
            f"select {names}, _record, {_NOW}, {batch} from _stage {where}"
        ).fetchone()[0]
        return BatchFigures(loaded=loaded, quarantined=quarantined, suppressed=suppressed)

    # -- run figures -------------------------------------------------------------------------
    def record_run(self, run_id: str, result: Any, started_at: dt.datetime) -> None:
        self.con.execute(
            f"insert into {self.ops}.ingest_runs values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                run_id,
                result.source,
                result.stream,
                result.status,
                started_at.replace(tzinfo=None),
                dt.datetime.now(dt.UTC).replace(tzinfo=None),
                *(getattr(result, name) for name in RUN_FIGURES),
            ],
        )
