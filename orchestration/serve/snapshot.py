"""The read-only profile snapshot: what lookups and triggers read instead of the warehouse.

DuckDB admits one writer process, and a reader holding the file open would block the pipeline
(and be blocked by it). So after each dbt build the pipeline exports the few marts the serving
side needs to Parquet, once, and the collector process reads those files only.

Layout under ``out_dir`` (``data/snapshot``)::

    current -> v-20261123T120000123456   (a symlink, replaced atomically)
    v-20261123T120000123456/customers.parquet, customer_identifiers.parquet,
                             segment_memberships.parquet, customer_events.parquet, manifest.json

A new version is written in full to a temporary folder, renamed to ``v-<ts>``, and only then
does ``current`` switch to it (``rename`` of a symlink is atomic), so a reader sees either the
old snapshot or the new one, never a mix. Older versions are removed after the switch (a reader
that already opened their files keeps them until it closes them).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import duckdb

from orchestration.serve.writer import fsync_path

log = logging.getLogger(__name__)

CURRENT = "current"
MANIFEST = "manifest.json"
DEFAULT_EVENTS_PER_CUSTOMER = 100
KEEP_VERSIONS = 2

# table -> (required, columns an empty stand-in gets when the mart is not built yet)
TABLES: dict[str, tuple[bool, dict[str, str]]] = {
    "customers": (True, {"customer_id": "varchar"}),
    "customer_identifiers": (
        True,
        {"customer_id": "varchar", "id_type": "varchar", "id_value": "varchar"},
    ),
    "segment_memberships": (
        False,
        {"segment": "varchar", "customer_id": "varchar", "entered_at": "timestamp"},
    ),
    "customer_events": (
        False,
        {
            "customer_id": "varchar",
            "event_type": "varchar",
            "event_name": "varchar",
            "occurred_at": "timestamp",
        },
    ),
}


class SnapshotMissing(FileNotFoundError):
    """No snapshot has been exported yet (no build has finished since the serving side began)."""


def _existing_tables(con: duckdb.DuckDBPyConnection, schema: str) -> set[str]:
    rows = con.execute(
        "select table_name from information_schema.tables where table_schema = ?", [schema]
    ).fetchall()
    return {r[0] for r in rows}


# column types Parquet readers (polars) cannot load as they are, and what they become
_PORTABLE = {
    "INTERVAL": "epoch({c})",  # seconds
    "UUID": "cast({c} as varchar)",
    "HUGEINT": "cast({c} as double)",
    "UHUGEINT": "cast({c} as double)",
    "JSON": "cast({c} as varchar)",
    "TIME WITH TIME ZONE": "cast({c} as varchar)",
}


def _projection(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> str:
    """``select`` list of the table with awkward types converted; new columns pass through."""
    rows = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, table],
    ).fetchall()
    parts = []
    for name, kind in rows:
        quoted = '"' + name.replace('"', '""') + '"'
        template = _PORTABLE.get(kind.upper())
        parts.append(f"{template.format(c=quoted)} as {quoted}" if template else quoted)
    return ", ".join(parts)


def _export_query(
    con: duckdb.DuckDBPyConnection, table: str, schema: str, events_per_customer: int
) -> str:
    source = f'(select {_projection(con, schema, table)} from "{schema}"."{table}")'
    if table == "customer_events":
        # the API shows a recent timeline; the full history stays in the warehouse
        return (
            f"select * from {source} where customer_id is not null "
            "qualify row_number() over (partition by customer_id "
            f"order by occurred_at desc nulls last) <= {int(events_per_customer)} "
            "order by customer_id, occurred_at desc nulls last"
        )
    if table == "customer_identifiers":
        return f"select * from {source} order by id_type, id_value"
    return f"select * from {source} order by customer_id"


def _write_version(
    con: duckdb.DuckDBPyConnection, folder: Path, schema: str, events_per_customer: int
) -> dict[str, int]:
    present = _existing_tables(con, schema)
    counts: dict[str, int] = {}
    for table, (required, columns) in TABLES.items():
        target = str(folder / f"{table}.parquet").replace("'", "''")
        if table in present:
            query = _export_query(con, table, schema, events_per_customer)
        elif required:
            raise RuntimeError(f"{schema}.{table} does not exist: run the dbt build first")
        else:
            log.warning("%s.%s is not built yet: the snapshot holds it empty", schema, table)
            query = (
                "select "
                + ", ".join(f"cast(null as {kind}) as {name}" for name, kind in columns.items())
                + " where false"
            )
        con.execute(f"copy ({query}) to '{target}' (format parquet, compression zstd)")
        counts[table] = con.execute(f"select count(*) from read_parquet('{target}')").fetchone()[0]
    return counts


def refresh(
    db_path: str | Path,
    out_dir: str | Path,
    *,
    con: duckdb.DuckDBPyConnection | None = None,
    schema: str = "marts",
    events_per_customer: int = DEFAULT_EVENTS_PER_CUSTOMER,
    keep_versions: int = KEEP_VERSIONS,
) -> Path:
    """Export the serving marts of ``db_path`` into a new snapshot version; returns its folder.

    Opens the warehouse read-only (pass ``con`` to reuse a connection the caller already holds,
    e.g. the pipeline's writer, since DuckDB refuses a second connection of another mode).
    ``keep_versions=1`` drops every older version at once (after a privacy deletion, so the
    forgotten person's data does not linger in the previous snapshot).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    staging = out / f".tmp-{stamp}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    own = con is None
    try:
        if own:
            con = duckdb.connect(str(db_path), read_only=True)
        counts = _write_version(con, staging, schema, events_per_customer)
        manifest = {
            "built_at": dt.datetime.now(dt.UTC).isoformat(),
            "warehouse": str(Path(db_path).resolve()),
            "rows": counts,
            "events_per_customer": events_per_customer,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        for child in staging.iterdir():
            fsync_path(child)
        version = out / f"v-{stamp}"
        os.replace(staging, version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if own and con is not None:
            con.close()
    _switch(out, version.name)
    _prune(out, keep=version.name, versions_kept=keep_versions)
    log.info("profile snapshot %s: %s", version.name, counts)
    return version


def _switch(out: Path, version_name: str) -> None:
    link = out / f".{CURRENT}-{uuid.uuid4().hex[:8]}"
    os.symlink(version_name, link)
    os.replace(link, out / CURRENT)
    fsync_path(out)


def _prune(out: Path, keep: str, versions_kept: int) -> None:
    versions = sorted(p for p in out.glob("v-*") if p.is_dir())
    for old in versions[: -max(1, versions_kept)]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)
    for stale in out.glob(".tmp-*"):
        # a refresh killed half-way; anything older than an hour is certainly abandoned
        age = dt.datetime.now().timestamp() - stale.stat().st_mtime
        if age > 3600:
            shutil.rmtree(stale, ignore_errors=True)


def current_version(out_dir: str | Path) -> Path | None:
    """The folder ``current`` points to, or ``None`` when no snapshot exists yet."""
    link = Path(out_dir) / CURRENT
    try:
        target = os.readlink(link)
    except (FileNotFoundError, OSError):
        return None
    return Path(out_dir) / target


def manifest(version: Path) -> dict[str, Any]:
    return json.loads((version / MANIFEST).read_text())
