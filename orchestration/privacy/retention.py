"""Retention: raw rows older than their source's period are deleted, and the deletion audited.

Periods live in ``retention.yml`` next to this module (or a file passed in), per source with
per-stream overrides, plus operational tables that keep copies of records (quarantine). Age is
measured by the stream's own timestamp when configured, else ``_loaded_at``. The dbt models
drop the rows at their next build, like any upstream deletion.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from connectors.loader import connect
from orchestration import settings
from orchestration.privacy.scan import q
from orchestration.privacy.tables import AuditEntry, ensure_privacy_tables, utcnow, write_audit

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).with_name("retention.yml")


@dataclass(frozen=True)
class Policy:
    table: str
    days: int
    column: str

    def cutoff(self, now: dt.datetime) -> dt.datetime:
        return now - dt.timedelta(days=self.days)


@dataclass
class RetentionResult:
    table: str
    days: int
    column: str
    cutoff: dt.datetime
    rows_deleted: int


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    config = yaml.safe_load(Path(path or DEFAULT_CONFIG).read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: retention config must be a mapping")
    return config


def _days(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"retention {where}: days must be a whole number >= 1 or null")
    return value


def policies(config: dict[str, Any], tables: list[str]) -> list[Policy]:
    """The policy of each existing table that has one (``schema.table`` names)."""
    default = config.get("default") or {}
    sources = config.get("sources") or {}
    found = []
    for table in tables:
        schema, name = table.split(".", 1)
        spec: dict[str, Any] | None = None
        if table in (config.get("tables") or {}):
            spec = {**default, **config["tables"][table]}
        elif schema.startswith("raw_"):
            source = sources.get(schema.removeprefix("raw_")) or {}
            stream = (source.get("streams") or {}).get(name) or {}
            spec = {**default, **{k: v for k, v in source.items() if k != "streams"}, **stream}
        if not spec:
            continue
        days = _days(spec.get("days"), table)
        if days is not None:
            found.append(Policy(table, days, spec.get("column") or "_loaded_at"))
    return found


def apply_retention(
    db_path: str | Path | None = None,
    config: str | Path | dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> list[RetentionResult]:
    """Delete rows past their retention period; one audit row per table touched."""
    path = Path(db_path) if db_path is not None else settings.duckdb_path()
    conf = config if isinstance(config, dict) else load_config(config)
    now = (now or utcnow()).replace(tzinfo=None)
    run_id = f"ret-{now:%Y%m%d%H%M%S}"
    con = connect(path)
    results: list[RetentionResult] = []
    try:
        ensure_privacy_tables(con)
        rows = con.execute(
            "select schema_name || '.' || table_name from duckdb_tables() "
            "where database_name = current_database() and not temporary"
        ).fetchall()
        con.execute("begin transaction")
        entries = []
        for policy in policies(conf, [r[0] for r in rows]):
            schema, name = policy.table.split(".", 1)
            columns = {
                c
                for (c,) in con.execute(
                    "select column_name from duckdb_columns() where "
                    "database_name = current_database() and schema_name = ? and table_name = ?",
                    [schema, name],
                ).fetchall()
            }
            if policy.column not in columns:
                raise ValueError(f"retention for {policy.table}: no column {policy.column!r}")
            age = q(policy.column)
            if "_loaded_at" in columns and policy.column != "_loaded_at":
                age = f"coalesce({age}, _loaded_at)"
            cutoff = policy.cutoff(now)
            deleted = con.execute(
                f"delete from {q(schema)}.{q(name)} where cast({age} as timestamp) < ?", [cutoff]
            ).fetchone()[0]
            results.append(
                RetentionResult(policy.table, policy.days, policy.column, cutoff, deleted)
            )
            if deleted:
                entries.append(
                    AuditEntry(
                        run_id,
                        "retention",
                        table_name=policy.table,
                        rows_affected=deleted,
                        detail=f"older than {policy.days} days by {policy.column} "
                        f"(before {cutoff:%Y-%m-%d %H:%M:%S})",
                        at=now,
                    )
                )
        entries.append(
            AuditEntry(
                run_id,
                "retention",
                rows_affected=sum(r.rows_deleted for r in results),
                detail=f"{len(results)} table(s) under a retention policy checked",
                at=now,
            )
        )
        write_audit(con, entries)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    finally:
        con.close()
    return results
