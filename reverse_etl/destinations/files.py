"""CSV or Parquet files: a snapshot of what was synced and one change file per batch.

For teams whose "destination" is a bucket another system reads. The snapshot is rewritten
atomically (temp file + rename) after each batch's change file, so a reader never sees a torn
file and a killed sync leaves the previous snapshot intact.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path
from typing import ClassVar

import polars as pl

from reverse_etl import settings
from reverse_etl.config import SyncConfig, SyncConfigError
from reverse_etl.destinations.base import Outcome, Row, all_ok, jsonable, register

KEY = "_key"
FORMATS = ("parquet", "csv")


def read_table(path: Path) -> pl.DataFrame:
    if path.suffix == ".csv":
        return pl.read_csv(path, infer_schema_length=0)  # all text: no type guessing
    return pl.read_parquet(path)


@register
class FilesDestination:
    kind: ClassVar[str] = "files"
    max_batch_size: ClassVar[int] = 10_000
    max_concurrency: ClassVar[int] = 1  # one snapshot file, rewritten per batch
    modes: ClassVar[frozenset[str]] = frozenset({"upsert", "update", "insert", "mirror"})

    def __init__(self, sync: SyncConfig, folder: Path, fmt: str) -> None:
        self.sync = sync
        self.folder = folder
        self.fmt = fmt
        self.writes = 0

    @classmethod
    def from_config(cls, sync: SyncConfig) -> FilesDestination:
        fmt = sync.options.get("format", "parquet")
        if fmt not in FORMATS:
            raise SyncConfigError(f"sync {sync.name!r}: format must be one of {FORMATS}")
        base = Path(sync.options.get("path") or sync.name)
        folder = base if base.is_absolute() else settings.exports_dir() / base
        return cls(sync, folder, fmt)

    @classmethod
    def estimate_calls(cls, action: str, rows: int, sync: SyncConfig) -> int:
        """One file write per batch."""
        return math.ceil(rows / min(sync.batch_size or cls.max_batch_size, cls.max_batch_size))

    @property
    def api_calls(self) -> int:
        return self.writes

    @property
    def snapshot_path(self) -> Path:
        return self.folder / f"snapshot.{self.fmt}"

    def open(self) -> None:
        (self.folder / "changes").mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        return None

    def _frame(self, action: str, rows: list[Row]) -> pl.DataFrame:
        records = [
            {KEY: r.key, **{k: jsonable(v) for k, v in r.fields.items()}}
            if action != "remove"
            else {KEY: r.key}
            for r in rows
        ]
        return pl.DataFrame(records, infer_schema_length=None)

    def _write(self, frame: pl.DataFrame, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        if self.fmt == "csv":
            frame.write_csv(tmp)
        else:
            frame.write_parquet(tmp)
        os.replace(tmp, path)

    def write(self, action: str, rows: list[Row]) -> list[Outcome]:
        self.open()
        snapshot = read_table(self.snapshot_path) if self.snapshot_path.exists() else None
        outcomes = all_ok(rows)
        if action == "update":
            existing = set(snapshot[KEY].to_list()) if snapshot is not None else set()
            outcomes = [
                Outcome(r.key, r.key in existing, None if r.key in existing else "no such record")
                for r in rows
            ]
            rows = [r for r in rows if r.key in existing]
        frame = self._frame(action, rows)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        change = frame.with_columns(pl.lit(action).alias("_action"))
        self._write(change, self.folder / "changes" / f"{stamp}-{action}.{self.fmt}")
        keys = [r.key for r in rows]
        kept = snapshot.filter(~pl.col(KEY).is_in(keys)) if snapshot is not None else None
        if action != "remove":
            if self.fmt == "csv":
                frame = frame.select(pl.all().cast(pl.String))
            kept = frame if kept is None else pl.concat([kept, frame], how="diagonal_relaxed")
        if kept is not None:
            self._write(kept.sort(KEY), self.snapshot_path)
        self.writes += 1
        return outcomes
