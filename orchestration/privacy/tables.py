"""The privacy job's own warehouse tables: suppression list, audit trail, deletion requests.

All three hold hashes, never the raw identifier (a deletion request keeps the value it was filed
with only until it is processed), so they survive the scan that proves a person is gone.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb

from orchestration.privacy.normalize import Identifier

SUPPRESSION_DDL = """
create table if not exists ops.suppression_list (
    id_type varchar not null,
    id_value_hash varchar not null,   -- sha256 hex of the normalized value
    added_at timestamp,
    request_id varchar,
    reason varchar,
    primary key (id_type, id_value_hash)
)
"""

AUDIT_DDL = """
create table if not exists ops.privacy_audit (
    audit_id varchar primary key,
    request_id varchar not null,
    step varchar not null,            -- resolve, suppress, delete_rows, destination, rebuild, ...
    status varchar not null,          -- ok, failed, skipped
    identifiers varchar,              -- JSON list of "type:sha256", never raw values
    table_name varchar,
    rows_affected bigint,
    destination varchar,
    response varchar,                 -- destination status and redacted body
    detail varchar,
    "at" timestamp not null           -- quoted: AT is a keyword in DuckDB 2
)
"""

REQUESTS_DDL = """
create table if not exists ops.deletion_requests (
    request_id varchar primary key,
    identifier varchar,               -- as filed; set to null once processed
    identifier_hash varchar,          -- sha256 of the trimmed text as filed, kept for lookups
    source varchar,                   -- cli, table, file:<name>
    requested_at timestamp not null,
    status varchar not null,          -- pending, done, partial, not_found, failed
    processed_at timestamp,
    message varchar
)
"""

# tables whose rows are the privacy job's own records: never scanned for deletion
PRIVACY_TABLES = frozenset({"ops.suppression_list", "ops.privacy_audit", "ops.deletion_requests"})


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def new_request_id() -> str:
    return f"del-{utcnow():%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}"


def ensure_privacy_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the cdp schema and the three privacy tables if they do not exist."""
    con.execute("create schema if not exists ops")
    for ddl in (SUPPRESSION_DDL, AUDIT_DDL, REQUESTS_DDL):
        con.execute(ddl)


def ensure_suppression_table(con: duckdb.DuckDBPyConnection) -> None:
    """The DDL helper connectors call before reading the list (it may not exist yet)."""
    con.execute("create schema if not exists ops")
    con.execute(SUPPRESSION_DDL)


def add_suppressions(
    con: duckdb.DuckDBPyConnection,
    identifiers: Iterable[Identifier],
    request_id: str,
    reason: str = "forget",
) -> int:
    """Add hashed identifiers to the suppression list; returns how many were new."""
    rows = sorted({(i.id_type, i.hash) for i in identifiers})
    if not rows:
        return 0
    before = con.execute("select count(*) from ops.suppression_list").fetchone()[0]
    con.executemany(
        "insert into ops.suppression_list (id_type, id_value_hash, added_at, request_id, reason) "
        "values (?, ?, ?, ?, ?) on conflict do nothing",
        [(t, h, utcnow(), request_id, reason) for t, h in rows],
    )
    return con.execute("select count(*) from ops.suppression_list").fetchone()[0] - before


@dataclass
class AuditEntry:
    """One receipt row: what a step did, to which table or destination, with what result."""

    request_id: str
    step: str
    status: str = "ok"
    identifiers: list[str] = field(default_factory=list)
    table_name: str | None = None
    rows_affected: int | None = None
    destination: str | None = None
    response: str | None = None
    detail: str | None = None
    at: dt.datetime = field(default_factory=utcnow)

    def describe(self) -> str:
        parts = [f"{self.at:%H:%M:%S}", f"{self.step:<12}", f"{self.status:<7}"]
        if self.table_name:
            parts.append(f"{self.table_name} rows={self.rows_affected}")
        if self.destination:
            parts.append(f"{self.destination}:" + (f" {self.response}" if self.response else ""))
        if self.detail:
            parts.append(self.detail)
        return " ".join(parts)


def write_audit(con: duckdb.DuckDBPyConnection, entries: Iterable[AuditEntry]) -> None:
    con.executemany(
        "insert into ops.privacy_audit values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                uuid.uuid4().hex,
                e.request_id,
                e.step,
                e.status,
                json.dumps(e.identifiers),
                e.table_name,
                e.rows_affected,
                e.destination,
                e.response,
                e.detail,
                e.at,
            )
            for e in entries
        ],
    )
