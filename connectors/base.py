"""The connector protocol: what a source declares (streams, columns, keys) and what it yields.

A connector only *reads*: it yields ``Page``s of raw records (JSON text, exactly as the source
gave them) together with the cursor that is valid once that page is stored. Typing, quarantine,
upserts and committing the cursor with the data are the loader's job, done once for every source,
so a new source is a small class that knows its API and nothing about DuckDB.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

ColumnKind = Literal["varchar", "bigint", "double", "boolean", "timestamp", "epoch", "json"]


@dataclass(frozen=True)
class Column:
    """A typed raw-table column extracted from the record's JSON at ``path``.

    ``kind`` says how: ``timestamp`` parses ISO-8601 (any offset, stored as naive UTC), ``epoch``
    takes unix seconds, ``json`` keeps the sub-document as JSON text.
    """

    name: str
    kind: ColumnKind = "varchar"
    path: str | None = None  # JSON path; defaults to ``$."<name>"``

    @property
    def json_path(self) -> str:
        return self.path or f'$."{self.name}"'


@dataclass(frozen=True)
class StreamSpec:
    """One stream's contract: its columns, primary key, and how a re-delivered key is treated.

    ``on_conflict="replace"`` keeps the latest version of a record (CRM, billing: records
    change); ``"ignore"`` keeps the first (events are immutable; re-delivery is a duplicate).
    ``identifiers`` maps columns to the identity types the suppression list is keyed on.
    """

    name: str
    columns: tuple[Column, ...]
    primary_key: str = "id"
    on_conflict: Literal["replace", "ignore"] = "replace"
    identifiers: dict[str, str] = field(default_factory=dict)

    @property
    def pk_column(self) -> Column:
        return next(c for c in self.columns if c.name == self.primary_key)


@dataclass
class Page:
    """Raw records and the stream cursor that is true once they are committed.

    ``rejects`` are inputs the connector itself could not turn into records (a CSV file that
    does not parse): ``(raw text, reason)`` pairs that go to quarantine with the batch.
    ``objects`` promises that every record is the text of a JSON object (the connector
    serialized parsed objects), so the loader need not check.
    """

    records: list[str]
    state: dict[str, Any] | None
    rejects: list[tuple[str, str]] = field(default_factory=list)
    objects: bool = False


class ConnectorError(Exception):
    """A stream or source failed; the message is written for the user and holds no secret.

    ``source_wide`` marks failures no other stream of the source would escape (401, 403, 404:
    credentials or endpoint), so the run does not knock on the same door again.
    """

    def __init__(
        self, message: str, *, source_wide: bool = False, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.source_wide = source_wide
        self.status = status  # the HTTP status that caused it, if any


class NotConfigured(Exception):  # noqa: N818 - reads as a condition, not an error
    """A source's credentials or configuration are absent: the source is skipped, not failed."""


class Connector:
    """Base of every source. Subclasses set ``name`` and ``specs``, and implement ``read``."""

    name: ClassVar[str]
    specs: ClassVar[dict[str, StreamSpec]] = {}

    @classmethod
    def stream_specs(cls) -> dict[str, StreamSpec]:
        """The streams this source offers (overridden where streams come from configuration)."""
        return cls.specs

    @classmethod
    def from_env(cls) -> Connector:
        """Build from environment variables; raise ``NotConfigured`` naming what is missing."""
        return cls()

    @property
    def retries(self) -> int:
        """Retries the source needed so far (HTTP sources count them in their client)."""
        return 0

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; the default has none."""


def specs_by_name(*specs: StreamSpec) -> dict[str, StreamSpec]:
    return {spec.name: spec for spec in specs}
