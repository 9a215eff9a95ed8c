"""Files an analyst drops somewhere: CSV, Parquet or JSON lines matched by a glob, declared in YAML.

Each declared stream becomes ``raw_files.<name>``. A file is loaded whole, once; if it changes
(size or modification time) it is loaded again, which the upsert on the primary key makes
harmless. CSV values are kept as the text the file holds (typing happens in the loader, where a
bad value is quarantined, not guessed). The YAML (``connectors/files.yml`` or
``CDP_FILES_CONFIG``)::

    streams:
      - name: trade_show_leads
        glob: exports/leads_*.csv        # relative to the YAML file's folder
        format: csv                      # csv | parquet | jsonl (default: from the extension)
        primary_key: lead_id
        columns: {lead_id: varchar, email: varchar, score: bigint, met_at: timestamp}
        identifiers: {email: email}      # for the suppression list
"""

from __future__ import annotations

import glob
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from connectors import settings
from connectors.base import Column, Connector, NotConfigured, Page, StreamSpec

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@dataclass(frozen=True)
class FileStream:
    spec: StreamSpec
    pattern: str
    format: str | None


def _format_of(path: Path, declared: str | None) -> str:
    fmt = declared or FORMATS.get(path.suffix.lower())
    if fmt not in {"csv", "parquet", "jsonl"}:
        raise ValueError(f"{path.name}: unknown format {fmt!r} (csv, parquet or jsonl)")
    return fmt


def _header(path: Path, fmt: str | None) -> list[str]:
    """Column names of a file; empty when it cannot be read (the load will quarantine it)."""
    try:
        fmt = _format_of(path, fmt)
        if fmt == "csv":
            return pl.scan_csv(path, infer_schema=False).collect_schema().names()
        if fmt == "parquet":
            return pl.scan_parquet(path).collect_schema().names()
        names: dict[str, None] = {}
        with path.open(errors="replace") as f:
            for line, _ in zip(f, range(100), strict=False):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    names.update(dict.fromkeys(record))
        return list(names)
    except Exception:  # noqa: BLE001
        log.warning("cannot read the header of %s", path.name)
        return []


def load_config(path: Path | None = None) -> dict[str, FileStream]:
    """The declared file streams; columns default to the first matching file's header."""
    path = path or settings.files_config_path()
    if not path.is_file():
        return {}
    doc = yaml.safe_load(path.read_text()) or {}
    streams: dict[str, FileStream] = {}
    for item in doc.get("streams") or []:
        name, pk = item.get("name"), item.get("primary_key")
        if not name or not pk or not item.get("glob"):
            raise ValueError(f"{path}: every file stream needs name, glob and primary_key: {item}")
        pattern = item["glob"]
        if not Path(pattern).is_absolute():
            pattern = str(path.parent / pattern)
        declared = item.get("columns") or {}
        if not declared:
            first = next(iter(sorted(glob.glob(pattern, recursive=True))), None)
            header = _header(Path(first), item.get("format")) if first else []
            declared = dict.fromkeys(header or [pk], "varchar")
        if pk not in declared:
            declared = {pk: "varchar", **declared}
        columns = tuple(Column(col, kind) for col, kind in declared.items())
        spec = StreamSpec(
            name=name, columns=columns, primary_key=pk, identifiers=item.get("identifiers") or {}
        )
        streams[name] = FileStream(spec, pattern, item.get("format"))
    return streams


class FilesConnector(Connector):
    name = "files"

    def __init__(self, streams: dict[str, FileStream], batch_rows: int | None = None) -> None:
        self.streams = streams
        self.batch_rows = batch_rows or settings.batch_rows()

    @classmethod
    def stream_specs(cls) -> dict[str, StreamSpec]:
        return {name: s.spec for name, s in load_config().items()}

    @classmethod
    def from_env(cls) -> FilesConnector:
        path = settings.files_config_path()
        streams = load_config(path)
        if not streams:
            raise NotConfigured(f"no file streams declared in {path} (set CDP_FILES_CONFIG)")
        return cls(streams)

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        declared = self.streams[stream]
        seen: dict[str, list[int]] = dict((state or {}).get("files", {}))
        for name in sorted(glob.glob(declared.pattern, recursive=True)):
            path = Path(name)
            stat = path.stat()
            fingerprint = [stat.st_size, stat.st_mtime_ns]
            if seen.get(name) == fingerprint:
                continue
            try:
                chunks = list(self._records(path, _format_of(path, declared.format)))
            except Exception as exc:  # noqa: BLE001 - an unreadable file is quarantined, not fatal
                log.warning("%s: cannot read %s: %s", stream, path.name, exc)
                seen[name] = fingerprint
                reason = f"cannot read {path.name}: {type(exc).__name__}: {exc}"[:500]
                yield Page([], {"files": dict(seen)}, rejects=[(name, reason)])
                continue
            for i, chunk in enumerate(chunks):
                last = i == len(chunks) - 1
                if last:
                    seen[name] = fingerprint
                # the file's mark moves only with its last chunk: a kill re-reads the file, upserts
                yield Page(chunk, {"files": dict(seen)} if last else None)

    def _records(self, path: Path, fmt: str) -> Iterator[list[str]]:
        if fmt == "jsonl":
            lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        else:
            frame = pl.read_csv(path, infer_schema=False) if fmt == "csv" else pl.read_parquet(path)
            lines = frame.write_ndjson().splitlines() if frame.height else []
        for start in range(0, max(len(lines), 1), self.batch_rows):
            yield lines[start : start + self.batch_rows]
