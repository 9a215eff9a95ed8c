"""The one protocol every destination implements, and the registry the engine looks them up in.

A destination turns a batch of rows into API calls and answers with one ``Outcome`` per row. It
raises ``BatchRejected`` only when the destination refused the batch as a whole for a reason that
lies in the data (a 4xx that names no row), so the engine can split the batch to isolate the bad
rows; transport failures surface as ``reverse_etl.http.HttpError`` after the client's retries.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from reverse_etl import http
from reverse_etl.config import SyncConfig, SyncConfigError

# what the engine asks a destination to do with a row, per sync mode and diff operation
ACTIONS = ("upsert", "update", "insert", "remove")


class MissingCredentials(Exception):
    """The destination's credentials or endpoint are not configured: the sync is skipped."""


class BatchRejected(Exception):
    """The destination refused the whole batch because of (some of) its rows."""


@dataclass
class Row:
    key: str
    fields: dict[str, Any]
    dest_id: str | None = None
    reason: str | None = None  # why a removed row left: its gate (no consent, suppressed), or None


@dataclass
class Outcome:
    key: str
    ok: bool
    error: str | None = None
    dest_id: str | None = None


class Destination(Protocol):
    kind: ClassVar[str]
    max_batch_size: ClassVar[int]
    modes: ClassVar[frozenset[str]]

    @property
    def api_calls(self) -> int: ...

    def open(self) -> None:
        """Prepare (find or create the list, audience, folder) before the first batch."""

    def write(self, action: str, rows: list[Row]) -> list[Outcome]:
        """Apply ``action`` to ``rows``; one outcome per row, in any order."""

    @classmethod
    def estimate_calls(cls, action: str, rows: int, sync: SyncConfig) -> int:
        """API calls ``rows`` rows take (for dry-run estimates, without credentials)."""

    def close(self) -> None: ...


REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: ``cls.kind`` -> ``cls`` (with ``from_config`` and ``calls_per_batch``)."""
    REGISTRY[cls.kind] = cls
    return cls


def build(sync: SyncConfig) -> Destination:
    """The destination of ``sync``; raises MissingCredentials when it cannot be reached."""
    from reverse_etl import destinations  # noqa: F401  (imports every module, filling REGISTRY)

    cls = REGISTRY.get(sync.destination)
    if cls is None:
        known = ", ".join(sorted(REGISTRY))
        raise SyncConfigError(
            f"sync {sync.name!r}: unknown destination {sync.destination!r} ({known})"
        )
    return cls.from_config(sync)


def jsonable(value: Any) -> Any:
    """Warehouse values as JSON-friendly values (timestamps ISO 8601, decimals as floats)."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def as_text(value: Any) -> str:
    """CRM property values are strings; a missing value clears the property."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(jsonable(value))


def all_ok(rows: list[Row], dest_ids: dict[str, str] | None = None) -> list[Outcome]:
    dest_ids = dest_ids or {}
    return [Outcome(r.key, True, dest_id=dest_ids.get(r.key, r.dest_id)) for r in rows]


class HttpDestination:
    """Shared plumbing of API destinations: the account's client, call counting, no-op hooks."""

    kind: ClassVar[str] = ""
    max_batch_size: ClassVar[int] = 100
    modes: ClassVar[frozenset[str]] = frozenset({"upsert", "mirror"})
    # batches a sync may have in flight at once (the sync's ``concurrency``, capped here)
    max_concurrency: ClassVar[int] = 4
    # the vendor's published limit; a sync's ``rate_limit`` overrides it
    default_rate_limit: ClassVar[tuple[int, float] | list[tuple[int, float]] | None] = None

    def __init__(self, sync: SyncConfig, client: http.Client) -> None:
        self.sync = sync
        self.client = client

    @classmethod
    def make_client(
        cls,
        sync: SyncConfig,
        base_url: str,
        credential: str | None,
        **kwargs: Any,
    ) -> http.Client:
        key = http.account_key(cls.kind, base_url, credential)
        limiter = http.limiter_for(key, sync.rate_limit or cls.default_rate_limit)
        kwargs.setdefault("max_attempts", int(sync.options.get("max_attempts", 8)))
        return http.Client(base_url, limiter=limiter, **kwargs)

    @property
    def api_calls(self) -> int:
        return self.client.calls

    def open(self) -> None:
        return None

    def close(self) -> None:
        self.client.session.close()

    @classmethod
    def calls_per_batch(cls, action: str, sync: SyncConfig) -> int:
        return 1

    @classmethod
    def estimate_calls(cls, action: str, rows: int, sync: SyncConfig) -> int:
        size = min(sync.batch_size or cls.max_batch_size, cls.max_batch_size)
        return math.ceil(rows / size) * cls.calls_per_batch(action, sync)

    def check_mode(self) -> None:
        if self.sync.mode not in self.modes:
            raise SyncConfigError(
                f"sync {self.sync.name!r}: {self.kind} supports modes {sorted(self.modes)}"
            )
