"""Profile lookups from the snapshot: who holds an identifier, and what we know about them.

A ``ProfileStore`` loads one snapshot version into memory once: a dict from ``(id_type,
id_value)`` to ``customer_id`` and, for each per-customer table, the frame sorted by customer
with the row range of every customer. A lookup is then a dict hit and a few small slices, well
under a millisecond at 100k customers, with no database connection at all.

Identifiers are normalized exactly as identity and privacy normalize them (email trimmed and
lower-cased, phone E.164 with +1 by default), through ``orchestration.privacy.normalize``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import math
import re
import threading
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from orchestration import settings
from orchestration.privacy.normalize import normalize, parse_identifier
from orchestration.serve import config
from orchestration.serve.snapshot import (
    SnapshotMissing,
    current_version,
    manifest,
    refresh,
)

log = logging.getLogger(__name__)

# the order an untyped value is tried in when it is neither an email nor a phone
PREFERRED_TYPES = ("user_id", "anonymous_id", "email", "phone")
# columns of marts.customers shown as attributes; every other column is a computed trait
ATTRIBUTE_COLUMNS = frozenset(
    {
        "email",
        "phone",
        "first_name",
        "last_name",
        "name",
        "full_name",
        "company",
        "company_name",
        "plan",
        "lifecycle_stage",
        "user_id",
        "country",
        "city",
        "timezone",
        "first_seen_at",
        "last_seen_at",
    }
)
CONSENT_COLUMN = re.compile(r"consent|opt_?in|opt_?out|unsubscribed|subscribed|suppressed")


def jsonable(value: Any) -> Any:
    """Values as JSON carries them: ISO-8601 times, floats for decimals, lists for arrays."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        value = float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # JSON has no NaN
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)  # uuids, blobs, anything a new mart column may bring


def _maybe_json(value: Any) -> Any:
    """A JSON document stored as text (event properties) comes back as the object it is."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _ranges(frame: pl.DataFrame) -> dict[Any, tuple[int, int]]:
    """customer_id -> (first row, row count) of a frame sorted by customer_id."""
    if frame.is_empty():
        return {}
    spans = (
        frame.select("customer_id")
        .with_row_index("_row")
        .group_by("customer_id", maintain_order=True)
        .agg(pl.col("_row").min().alias("start"), pl.len().alias("n"))
    )
    return {
        cid: (int(start), int(n))
        for cid, start, n in zip(spans["customer_id"], spans["start"], spans["n"], strict=True)
        if cid is not None
    }


class ProfileStore:
    """One snapshot version, in memory, answering lookups."""

    def __init__(self, version: Path) -> None:
        self.version = version
        self.manifest = manifest(version)
        self.customers = pl.read_parquet(version / "customers.parquet")
        self._customer_rows = {
            cid: i for i, cid in enumerate(self.customers["customer_id"]) if cid is not None
        }
        identifiers = pl.read_parquet(version / "customer_identifiers.parquet")
        self._owner: dict[tuple[str, str], Any] = dict(
            zip(
                zip(identifiers["id_type"], identifiers["id_value"], strict=True),
                identifiers["customer_id"],
                strict=True,
            )
        )
        self.id_types = sorted(
            set(identifiers["id_type"].drop_nulls().unique()),
            key=lambda t: (PREFERRED_TYPES.index(t) if t in PREFERRED_TYPES else 99, t),
        )
        self.identifiers = identifiers.sort("customer_id", maintain_order=True)
        self._identifier_rows = _ranges(self.identifiers)
        self.memberships = pl.read_parquet(version / "segment_memberships.parquet").sort(
            "customer_id", maintain_order=True
        )
        self._membership_rows = _ranges(self.memberships)
        # exported sorted by customer, newest first; keep that order
        self.events = pl.read_parquet(version / "customer_events.parquet")
        self._event_rows = _ranges(self.events)

    # -- resolution ------------------------------------------------------------------------
    def owner(self, id_type: str, value: Any) -> Any | None:
        """The customer holding ``id_type`` = ``value`` (normalized here), or ``None``."""
        if id_type == "customer_id":
            return value if value in self._customer_rows else None
        normalized = normalize(id_type, value)
        if normalized is None:
            return None
        return self._owner.get((id_type, normalized))

    def resolve(self, identifier: str) -> tuple[Any, str, str] | None:
        """``(customer_id, id_type, id_value)`` for what a user typed, or ``None``.

        ``type:value`` is looked up as given; a bare value is an email when it has an ``@``,
        a phone when it reads as one, else every identifier type is tried in turn.
        """
        text = identifier.strip()
        head, sep, tail = text.partition(":")
        if sep and head == "customer_id":
            cid = self._typed_customer_id(tail.strip())
            return (cid, "customer_id", tail.strip()) if cid is not None else None
        try:
            candidates = parse_identifier(text)
        except ValueError:
            candidates = []
        for candidate in candidates:
            types = self.id_types if candidate.id_type == "*" else [candidate.id_type]
            for id_type in types:
                cid = self.owner(id_type, candidate.value)
                if cid is not None:
                    return cid, id_type, normalize(id_type, candidate.value) or candidate.value
        if sep and head not in self.id_types and not any(c.id_type == "*" for c in candidates):
            # "urn:x" is a bare value containing a colon, not the unknown type "urn"
            for id_type in self.id_types:
                cid = self.owner(id_type, text)
                if cid is not None:
                    return cid, id_type, text
        return None

    def _typed_customer_id(self, text: str) -> Any | None:
        if text in self._customer_rows:
            return text
        if text.isdigit() and int(text) in self._customer_rows:
            return int(text)
        return None

    # -- profile parts ---------------------------------------------------------------------
    @staticmethod
    def _slice(frame: pl.DataFrame, spans: dict, cid: Any, limit: int | None = None) -> list:
        span = spans.get(cid)
        if span is None:
            return []
        start, n = span
        rows = frame.slice(start, n if limit is None else min(n, limit)).to_dicts()
        for row in rows:
            row.pop("customer_id", None)
        return rows

    def customer(self, cid: Any) -> dict[str, Any] | None:
        row = self._customer_rows.get(cid)
        return self.customers.row(row, named=True) if row is not None else None

    def segments(self, cid: Any) -> list[dict[str, Any]]:
        return self._slice(self.memberships, self._membership_rows, cid)

    def identifiers_of(self, cid: Any) -> list[dict[str, Any]]:
        return self._slice(self.identifiers, self._identifier_rows, cid)

    def segment_names(self, cid: Any) -> set[str]:
        return {m["segment"] for m in self.segments(cid)}

    def events_of(self, cid: Any, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._slice(self.events, self._event_rows, cid, limit)
        for row in rows:
            if "properties" in row:
                row["properties"] = _maybe_json(row["properties"])
        return jsonable(rows)

    def profile(self, cid: Any) -> dict[str, Any] | None:
        """The unified profile: attributes, traits, segments and identifiers of one customer."""
        row = self.customer(cid)
        if row is None:
            return None
        attributes: dict[str, Any] = {}
        traits: dict[str, Any] = {}
        for column, value in row.items():
            if column == "customer_id":
                continue
            if column == "traits" and isinstance(_maybe_json(value), dict):
                traits.update(_maybe_json(value))
            elif column in ATTRIBUTE_COLUMNS or CONSENT_COLUMN.search(column):
                attributes[column] = value
            else:
                traits[column] = value
        return jsonable(
            {
                "customer_id": cid,
                "attributes": attributes,
                "traits": traits,
                "segments": self.segments(cid),
                "identifiers": self.identifiers_of(cid),
                "snapshot": {
                    "version": self.version.name,
                    "built_at": self.manifest.get("built_at"),
                },
            }
        )

    def lookup(self, identifier: str) -> dict[str, Any] | None:
        found = self.resolve(identifier)
        if found is None:
            return None
        cid, id_type, id_value = found
        profile = self.profile(cid)
        if profile is not None:
            profile["matched"] = {"id_type": id_type, "id_value": id_value}
        return profile


class SnapshotReader:
    """The current ``ProfileStore`` of a snapshot folder, reloaded when a build swaps it."""

    def __init__(self, snapshot_dir: str | Path) -> None:
        self.snapshot_dir = Path(snapshot_dir)
        self._store: ProfileStore | None = None
        self._lock = threading.Lock()

    def refresh_if_changed(self) -> bool:
        """Load the version ``current`` points to if it is not the one held; True if it was."""
        version = current_version(self.snapshot_dir)
        if version is None or (self._store is not None and self._store.version == version):
            return False
        with self._lock:
            if self._store is not None and self._store.version == version:
                return False
            try:
                store = ProfileStore(version)
            except FileNotFoundError:
                return False  # pruned between readlink and load: the next call sees the newer one
            self._store = store
        log.info("profile snapshot %s loaded (%d customers)", version.name, store.customers.height)
        return True

    def store(self) -> ProfileStore | None:
        if self._store is None:
            self.refresh_if_changed()
        return self._store


_READERS: dict[Path, SnapshotReader] = {}
_READERS_LOCK = threading.Lock()


def reader_for(snapshot_dir: str | Path) -> SnapshotReader:
    key = Path(snapshot_dir).resolve()
    with _READERS_LOCK:
        if key not in _READERS:
            _READERS[key] = SnapshotReader(key)
        return _READERS[key]


def lookup(identifier: str, snapshot_dir: str | Path | None = None) -> dict[str, Any] | None:
    """The unified profile of whoever holds ``identifier`` (``type:value`` or a bare value).

    Reads the snapshot only. With the default folder and no snapshot yet, one is exported from
    the warehouse first (read-only), so ``cdp profile`` works right after a first build.
    """
    folder = Path(snapshot_dir) if snapshot_dir is not None else config.snapshot_dir()
    reader = reader_for(folder)
    reader.refresh_if_changed()
    store = reader.store()
    if store is None:
        db_path = settings.duckdb_path()
        if snapshot_dir is not None or not db_path.exists():
            raise SnapshotMissing(f"no profile snapshot in {folder}: run `cdp build` first")
        log.info("no profile snapshot yet: exporting one from %s", db_path)
        try:
            refresh(db_path, folder)
        except duckdb.IOException as exc:  # another process holds the write lock
            raise SnapshotMissing(
                f"no profile snapshot in {folder}, and the warehouse is busy ({exc}); "
                "one is written after the running build"
            ) from None
        reader.refresh_if_changed()
        store = reader.store()
    return store.lookup(identifier) if store is not None else None
