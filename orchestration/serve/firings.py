"""Load the collector's trigger firing log into ``ops.trigger_firings``.

The collector never opens the warehouse, so it appends firings to JSONL files; the pipeline,
which holds the write lock anyway, copies them in. Each firing has a unique ``firing_id``, so
loading the same files again adds nothing (the log is append-only and re-read whole).
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb

from orchestration.serve import config

log = logging.getLogger(__name__)

COLUMNS = {
    "firing_id": "varchar",
    "rule": "varchar",
    "customer_id": "varchar",
    "message_id": "varchar",
    "event_type": "varchar",
    "event_name": "varchar",
    "action": "varchar",
    "status": "varchar",
    "received_at": "timestamp",
    "decided_at": "timestamp",
    "delivered_at": "timestamp",
    "latency_ms": "double",
    "http_status": "integer",
    "error": "varchar",
}


def load_firings(con: duckdb.DuckDBPyConnection, firings_dir: str | Path | None = None) -> int:
    """Insert firings not yet in ``ops.trigger_firings``; returns how many were added."""
    folder = Path(firings_dir) if firings_dir is not None else config.firings_dir()
    columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    con.execute("create schema if not exists ops")
    con.execute(
        f"create table if not exists ops.trigger_firings ({columns}, primary key (firing_id))"
    )
    files = sorted(folder.glob("firings-*.jsonl"))
    if not files:
        return 0
    paths = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
    spec = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in COLUMNS.items()) + "}"
    before = con.execute("select count(*) from ops.trigger_firings").fetchone()[0]
    con.execute(
        f"""
        insert into ops.trigger_firings
        select distinct on (firing_id) {", ".join(COLUMNS)}
        from read_json([{paths}], format = 'newline_delimited', columns = {spec})
        where firing_id not in (select firing_id from ops.trigger_firings)
        """
    )
    added = con.execute("select count(*) from ops.trigger_firings").fetchone()[0] - before
    log.info("loaded %d trigger firing(s) from %s", added, folder)
    return added
