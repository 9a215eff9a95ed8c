"""The product's own database: ``users`` and ``orders``, incremental on ``updated_at``.

Reads use keyset pagination on ``(updated_at, id)``: rows strictly after the last committed pair,
in that order. Unlike ``updated_at >= cursor`` this neither re-reads ties forever nor skips rows
that share a timestamp across a page boundary. PostgreSQL (psycopg) is the real target; SQLite
(stdlib) lets the demo run without a server. Deleted rows are not seen (no soft-delete column),
nor are rows without ``updated_at``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import sqlite3
from collections.abc import Iterator
from typing import Any

import orjson

from connectors import settings
from connectors.base import (
    Column,
    Connector,
    ConnectorError,
    NotConfigured,
    Page,
    StreamSpec,
    specs_by_name,
)

log = logging.getLogger(__name__)

USERS = StreamSpec(
    name="users",
    columns=(
        Column("id", "bigint"),
        Column("email"),
        Column("phone"),
        Column("first_name"),
        Column("last_name"),
        Column("plan"),
        Column("marketing_opt_in", "boolean"),
        Column("created_at", "timestamp"),
        Column("updated_at", "timestamp"),
    ),
    identifiers={"email": "email", "phone": "phone", "id": "user_id"},
)
ORDERS = StreamSpec(
    name="orders",
    columns=(
        Column("id", "bigint"),
        Column("user_id", "bigint"),
        Column("amount", "double"),
        Column("currency"),
        Column("status"),
        Column("created_at", "timestamp"),
        Column("updated_at", "timestamp"),
    ),
    identifiers={"user_id": "user_id"},
)


def _default(value: object) -> object:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    raise TypeError(type(value).__name__)


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


class AppConnector(Connector):
    name = "app"
    specs = specs_by_name(USERS, ORDERS)
    page_rows = 5000

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = "postgres" if url.startswith(("postgresql://", "postgres://")) else "sqlite"
        if self.dialect == "sqlite" and not url.startswith("sqlite:///"):
            raise NotConfigured(
                f"CDP_APP_DB_URL={_redact(url)}: use postgresql://... or sqlite:///path"
            )
        self._con: Any = None

    @classmethod
    def from_env(cls) -> AppConnector:
        url = settings.env("CDP_APP_DB_URL")
        if not url:
            raise NotConfigured("CDP_APP_DB_URL is not set (postgresql://... or sqlite:///...)")
        return cls(url)

    def _connect(self) -> Any:
        if self._con is None:
            try:
                if self.dialect == "postgres":
                    import psycopg

                    self._con = psycopg.connect(self.url, autocommit=True)
                else:
                    path = self.url.removeprefix("sqlite:///")
                    # read in the ingest's reader thread, closed from the caller's
                    self._con = sqlite3.connect(
                        f"file:{path}?mode=ro", uri=True, check_same_thread=False
                    )
            except Exception as exc:
                # driver messages can echo the DSN; name the variable, not its value
                raise ConnectorError(
                    f"cannot connect to the app database ({type(exc).__name__}); "
                    f"check CDP_APP_DB_URL ({_redact(self.url)})",
                    source_wide=True,
                ) from None
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        con = self._connect()
        mark = "%s" if self.dialect == "postgres" else "?"
        last = (state or {}).get("updated_at"), (state or {}).get("id")
        while True:
            # rows without updated_at cannot be tracked incrementally; they are not read
            where, params = "where updated_at is not null", []
            if last[0] is not None:
                where += f" and (updated_at > {mark} or (updated_at = {mark} and id > {mark}))"
                params = [last[0], last[0], last[1]]
            cur = con.cursor()
            cur.execute(
                f"select * from {stream} {where} order by updated_at, id limit {self.page_rows}",
                params,
            )
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
            if not rows:
                return
            records = [
                orjson.dumps(dict(zip(names, row, strict=True)), default=_default).decode()
                for row in rows
            ]
            tail = dict(zip(names, rows[-1], strict=True))
            stamp = tail["updated_at"]
            # the database's own representation, so the next comparison is exact
            last = (stamp if isinstance(stamp, str) else stamp.isoformat(), tail["id"])
            yield Page(records, {"updated_at": last[0], "id": last[1]})
            if len(rows) < self.page_rows:
                return
