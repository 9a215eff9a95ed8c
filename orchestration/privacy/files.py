"""Erase a person from the files composable-cdp itself wrote outside the warehouse.

The warehouse is not the only copy: the collector keeps every accepted event as JSON lines, the
trigger engine logs its firings, the collector keeps refused messages, and the Files destination
leaves a snapshot plus one change file per batch. What happens to each kind:

- published event files (``events-*.jsonl``), refused messages (``_rejected/*.jsonl.rejected``),
  firing logs (``firings-*.jsonl``), Files exports (``*.csv``, ``*.parquet`` under the exports
  folders): rewritten without the lines or rows that hold the person;
- the event file a running collector is appending to (``*.jsonl.open``): not touched under the
  writer's feet. The collector is asked to publish it (a ``.rotate-request`` flag it polls) and
  it is rewritten once published; with no collector holding the folder, leftovers are rewritten
  under the folder lock the collector takes at start.

A rewrite writes a temp file in the same folder, fsyncs it, renames it over the original and
fsyncs the folder, so a crash leaves the old file or the new one, never a torn one. Every other
line (row) keeps its bytes (values) and its order. Files that are appended to (firing log,
refused messages) are rewritten under the ``flock`` their appenders take (``append_locked``), so
no line is appended to a file being replaced.

The events connector remembers a byte offset per file; the offset of a rewritten file is moved
back by the bytes removed before it, in the same transaction as the warehouse deletion.

A line belongs to the person by the warehouse scan's rules (``scan.Scanner``): emails and phones
in any case or format anywhere, opaque ids under a key that holds them.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from orchestration.privacy.normalize import Identifier
from orchestration.privacy.scan import ANY_TYPE, Scanner
from orchestration.serve.writer import (
    CLOSED_SUFFIX,
    LOCK_NAME,
    OPEN_SUFFIX,
    REJECTED_DIR,
    ROTATE_REQUEST,
    fsync_path,
)

log = logging.getLogger(__name__)

TMP_SUFFIX = ".forget-tmp"
EVENT_KEYS = "raw_events.events"  # event lines carry the keys of the raw events table
EXPORT_KEYS = "files.export"  # an export row's ``_key`` is the sync's identity key
EVENTS_CURSOR = ("events", "events")  # (source, stream) of the events connector's offsets
ROTATE_ROUNDS = 3


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value) if value else None


def _files_sync_folders() -> list[Path]:
    """Folders of Files syncs declared with an absolute path (relative ones are under exports)."""
    try:
        from reverse_etl.config import load_syncs

        syncs = load_syncs()
    except Exception as exc:  # no project or a broken YAML must not stop a deletion
        log.warning("sync declarations unreadable (%s): only the exports folder is scanned", exc)
        return []
    found = []
    for sync in syncs:
        path = sync.options.get("path") if sync.destination == "files" else None
        if path and Path(path).is_absolute():
            found.append(Path(path))
    return found


@dataclass(frozen=True)
class FileLocations:
    """Where the files are: the same defaults the writers use, beside the warehouse file."""

    data_dir: Path
    events_dir: Path
    firings_dir: Path
    exports_dirs: tuple[Path, ...]

    @classmethod
    def for_warehouse(cls, db_path: Path) -> FileLocations:
        base = db_path.parent
        exports = [_env_path("CDP_EXPORTS_DIR") or base / "exports", *_files_sync_folders()]
        return cls(
            data_dir=base,
            events_dir=_env_path("CDP_EVENTS_DIR") or base / "events",
            firings_dir=_env_path("CDP_TRIGGER_FIRINGS_DIR") or base / "trigger_firings",
            exports_dirs=tuple(dict.fromkeys(exports)),
        )

    def relative(self, path: Path) -> str:
        """The receipt's name of a file: relative to the data folder where it is inside it."""
        try:
            return path.resolve().relative_to(self.data_dir.resolve()).as_posix()
        except ValueError:
            return str(path)

    def published_events(self) -> list[Path]:
        return sorted(self.events_dir.glob(f"events-*{CLOSED_SUFFIX}"))

    def open_events(self) -> list[Path]:
        return sorted(self.events_dir.glob(f"events-*{OPEN_SUFFIX}"))

    def appended_logs(self) -> list[tuple[str, Path]]:
        logs = [("firing_log", p) for p in sorted(self.firings_dir.glob("firings-*.jsonl"))]
        rejected = self.events_dir / REJECTED_DIR
        logs += [("rejected_events", p) for p in sorted(rejected.glob("*.jsonl.rejected"))]
        return logs

    def exports(self) -> list[Path]:
        found = []
        for folder in self.exports_dirs:
            for pattern in ("*.csv", "*.parquet"):
                found += [p for p in folder.rglob(pattern) if not p.name.startswith(".")]
        return sorted(set(found))

    def folders(self) -> list[Path]:
        return [self.events_dir, self.events_dir / REJECTED_DIR, self.firings_dir]


@dataclass
class FileOutcome:
    """What one file became: one receipt row each."""

    kind: str  # collector_events, rejected_events, firing_log, files_export
    path: str  # relative to the data folder
    removed: int = 0
    kept: int = 0
    status: str = "ok"  # ok, failed
    detail: str = ""


# -- matching --------------------------------------------------------------------------------


class Matcher:
    """The warehouse scan's rules applied to the lines and rows of files (in-memory DuckDB)."""

    def __init__(self, identifiers: Iterable[Identifier]) -> None:
        self.con = duckdb.connect()
        self.scanner = Scanner(self.con, identifiers)
        self.scanner.extra_keys[EXPORT_KEYS] = {"_key": (ANY_TYPE,)}
        target = self.scanner.target
        self.empty = not (target.emails or target.phones or target.typed_ids)

    def close(self) -> None:
        self.con.close()

    def rows(self, table: pa.Table, keys_of: str) -> set[int]:
        """Positions of the rows of ``table`` that hold the person."""
        if self.empty or table.num_rows == 0:
            return set()
        table = table.append_column("_file_row", pa.array(range(table.num_rows), pa.int64()))
        self.con.register("_file_rows_in", table)
        try:
            self.con.execute("create or replace table main.file_rows as from _file_rows_in")
        finally:
            self.con.unregister("_file_rows_in")
        self.scanner.forget_columns()
        sql = self.scanner.matching_rowids_sql("main.file_rows", keys_of=keys_of)
        if sql is None:
            return set()
        found = self.con.execute(
            f"select _file_row from main.file_rows where rowid in ({sql})"
        ).fetchall()
        return {n for (n,) in found}

    def lines(self, data: bytes, lines: list[bytes], keys_of: str) -> set[int]:
        """Positions of the JSON lines of ``data`` that hold the person (a line is one cell).

        Every line goes to DuckDB, whose vectorized prefilter (the scan's) is far quicker than a
        regex pass in Python; only lines that pass it are taken apart.
        """
        if self.empty or not lines:
            return set()
        try:
            texts = pa.array(lines, pa.binary()).cast(pa.string())
        except pa.ArrowInvalid:  # not UTF-8 throughout: match what it decodes to
            texts = pa.array([line.decode("utf-8", errors="replace") for line in lines])
        return self.rows(pa.table({"line": texts}), keys_of)


# -- reading and writing files ---------------------------------------------------------------


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` a temp file beside ``path``, fsync it, rename it over ``path``, fsync the folder.

    A crash leaves either the old file or the new one; the temp file (dot-named, so no reader's
    pattern takes it) is removed by the next run.
    """
    tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")
    try:
        write(tmp)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_path(path.parent)


def split_lines(data: bytes) -> list[bytes]:
    """Lines as JSON-lines readers see them: ended by ``\\n`` only, each with its end."""
    parts = data.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]]
    return [*lines, parts[-1]] if parts[-1] else lines


def csv_records(data: bytes) -> tuple[list[bytes], list[list[str]]]:
    """Each CSV record's exact bytes (quoted newlines included) and its parsed fields."""
    raw_lines = split_lines(data)
    consumed: list[bytes] = []

    def feed() -> Iterator[str]:
        for raw in raw_lines:
            consumed.append(raw)
            yield raw.decode("utf-8", errors="replace")

    chunks: list[bytes] = []
    rows: list[list[str]] = []
    for row in csv.reader(feed()):
        chunks.append(b"".join(consumed))
        consumed.clear()
        rows.append(row)
    if consumed:
        chunks.append(b"".join(consumed))
        rows.append([])
    if b"".join(chunks) != data:
        raise ValueError("CSV records do not add up to the file")
    return chunks, rows


@contextlib.contextmanager
def locked_current(path: Path) -> Iterator[bytes]:
    """The file's bytes, read under the appenders' exclusive ``flock``, held until exit."""
    while True:
        with path.open("rb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                mine, current = os.fstat(f.fileno()), os.stat(path)
                if (mine.st_dev, mine.st_ino) != (current.st_dev, current.st_ino):
                    continue  # replaced while we waited: lock the new one
                yield f.read()
                return
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def unlocked(path: Path) -> Iterator[bytes]:
    yield path.read_bytes()


@dataclass
class Rewrite:
    """Lines dropped from one file: how many, and their byte spans (for offset cursors)."""

    removed: int = 0
    kept: int = 0
    spans: list[tuple[int, int]] = field(default_factory=list)

    def offset_after(self, offset: int) -> int:
        """Where a byte offset into the old file lands in the new one."""
        moved = 0
        for start, end in self.spans:
            if end <= offset:
                moved += end - start
            elif start < offset:
                moved += offset - start
        return offset - moved


def rewrite_lines(
    path: Path, matcher: Matcher, keys_of: str, *, lock: bool, dry_run: bool = False
) -> Rewrite:
    """Drop the person's lines of a JSON-lines file; every other line keeps its bytes."""
    with (locked_current if lock else unlocked)(path) as data:
        lines = split_lines(data)
        drop = matcher.lines(data, lines, keys_of)
        result = Rewrite(removed=len(drop), kept=len(lines) - len(drop))
        position = 0
        for n, line in enumerate(lines):
            if n in drop:
                result.spans.append((position, position + len(line)))
            position += len(line)
        if drop and not dry_run:
            kept = b"".join(line for n, line in enumerate(lines) if n not in drop)
            replace_atomically(path, lambda tmp: tmp.write_bytes(kept))
    return result


def rewrite_export(path: Path, matcher: Matcher, *, dry_run: bool = False) -> Rewrite:
    """Drop the person's rows of a Files export (CSV records keep their bytes)."""
    if path.suffix == ".csv":
        chunks, rows = csv_records(path.read_bytes())
        if not rows:
            return Rewrite()
        header, body = rows[0], rows[1:]
        names = [
            f"{name}" if header.count(name) == 1 else f"{name}_{i}" for i, name in enumerate(header)
        ]
        columns = {
            name: [row[i] if i < len(row) else None for row in body] for i, name in enumerate(names)
        }
        drop = {
            n + 1 for n in matcher.rows(pa.table(columns, schema=_text_schema(names)), EXPORT_KEYS)
        }
        result = Rewrite(removed=len(drop), kept=len(body) - len(drop))
        if drop and not dry_run:
            kept = b"".join(chunk for n, chunk in enumerate(chunks) if n not in drop)
            replace_atomically(path, lambda tmp: tmp.write_bytes(kept))
        return result
    frame = pl.read_parquet(path)
    drop = matcher.rows(frame.to_arrow(), EXPORT_KEYS)
    result = Rewrite(removed=len(drop), kept=frame.height - len(drop))
    if drop and not dry_run:
        kept_frame = (
            frame.with_row_index("_file_row")
            .filter(~pl.col("_file_row").is_in(sorted(drop)))
            .drop("_file_row")
        )
        replace_atomically(path, kept_frame.write_parquet)
    return result


def _text_schema(names: list[str]) -> pa.Schema:
    return pa.schema([(name, pa.string()) for name in names])


# -- the live collector ------------------------------------------------------------------------


@contextlib.contextmanager
def collector_lock(folder: Path) -> Iterator[bool]:
    """The collector's folder lock if no collector holds it (``True``), else ``False``."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def request_rotation(folder: Path, open_files: list[Path], timeout_s: float) -> list[Path]:
    """Ask the running collector to publish ``open_files``; returns those still open."""
    flag = folder / ROTATE_REQUEST
    flag.write_text(json.dumps({"requested_at": time.time()}))
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            still = [p for p in open_files if p.exists()]
            if not still or time.monotonic() >= deadline:
                return still
            time.sleep(0.05)
    finally:
        flag.unlink(missing_ok=True)


def rotate_timeout_s() -> float:
    """How long to wait for the collector: its own age limit (it rotates then anyway) + 5 s."""
    configured = os.environ.get("CDP_FORGET_ROTATE_TIMEOUT", "").strip()
    if configured:
        return float(configured)
    return float(os.environ.get("CDP_EVENTS_ROTATE_SECONDS", "").strip() or 60) + 5.0


# -- the step --------------------------------------------------------------------------------


class FileEraser:
    """Rewrites every file of ``locations`` without the person; one outcome per file touched."""

    def __init__(
        self,
        identifiers: Iterable[Identifier],
        locations: FileLocations,
        rotate_timeout: float | None = None,
    ) -> None:
        self.locations = locations
        self.matcher = Matcher(identifiers)
        self.rotate_timeout = rotate_timeout_s() if rotate_timeout is None else rotate_timeout
        self.offsets: dict[str, Rewrite] = {}  # events files rewritten, by connector key

    def close(self) -> None:
        self.matcher.close()

    def erase(self) -> list[FileOutcome]:
        if self.matcher.empty:
            return []
        self._remove_stale_temp_files()
        outcomes = self._events()
        for kind, path in self.locations.appended_logs():
            outcomes += self._one(
                kind, path, lambda p: rewrite_lines(p, self.matcher, EVENT_KEYS, lock=True)
            )
        for path in self.locations.exports():
            outcomes += self._one("files_export", path, lambda p: rewrite_export(p, self.matcher))
        return outcomes

    def residual(self) -> dict[str, int]:
        """Lines or rows still holding the person, per file (open event files included)."""
        found: dict[str, int] = {}
        checks: list[tuple[Path, Callable[[Path], Rewrite]]] = []
        for path in self.locations.published_events() + self.locations.open_events():
            checks.append(
                (
                    path,
                    lambda p: rewrite_lines(p, self.matcher, EVENT_KEYS, lock=False, dry_run=True),
                )
            )
        for _, path in self.locations.appended_logs():
            checks.append(
                (
                    path,
                    lambda p: rewrite_lines(p, self.matcher, EVENT_KEYS, lock=False, dry_run=True),
                )
            )
        for path in self.locations.exports():
            checks.append((path, lambda p: rewrite_export(p, self.matcher, dry_run=True)))
        for path, check in checks:
            try:
                n = check(path).removed
            except FileNotFoundError:
                continue
            if n:
                found[self.locations.relative(path)] = n
        return found

    def _one(self, kind: str, path: Path, rewrite: Callable[[Path], Rewrite]) -> list[FileOutcome]:
        rel = self.locations.relative(path)
        try:
            result = rewrite(path)
        except FileNotFoundError:
            return []  # gone meanwhile (a rotated or cleaned-up file): nothing of theirs in it
        except Exception as exc:
            log.exception("could not rewrite %s", rel)
            return [
                FileOutcome(kind, rel, status="failed", detail=f"{type(exc).__name__}: {exc}"[:300])
            ]
        if not result.removed:
            return []
        if kind == "collector_events" and path.name.endswith(CLOSED_SUFFIX):
            self.offsets[path.relative_to(self.locations.events_dir).as_posix()] = result
        return [FileOutcome(kind, rel, result.removed, result.kept)]

    def _events(self) -> list[FileOutcome]:
        """Published event files, after the collector published what it held open."""
        loc = self.locations
        if not loc.events_dir.is_dir():
            return []
        outcomes: list[FileOutcome] = []

        def rewrite(p: Path) -> Rewrite:
            return rewrite_lines(p, self.matcher, EVENT_KEYS, lock=False)

        with collector_lock(loc.events_dir) as free:
            if free:  # no collector: leftovers of a crashed one are rewritten as they lie
                for path in loc.published_events() + loc.open_events():
                    outcomes += self._one("collector_events", path, rewrite)
                return outcomes
        done: set[Path] = set()
        for _ in range(ROTATE_ROUNDS):
            holding = [p for p in loc.open_events() if self._holds(p)]
            if holding:
                still = request_rotation(loc.events_dir, holding, self.rotate_timeout)
                if still:
                    for path in still:
                        outcomes.append(
                            FileOutcome(
                                "collector_events",
                                loc.relative(path),
                                status="failed",
                                detail=f"the running collector did not publish it within "
                                f"{self.rotate_timeout:.0f}s; not rewritten",
                            )
                        )
                    return outcomes
            for path in loc.published_events():
                if path not in done:
                    outcomes += self._one("collector_events", path, rewrite)
                    done.add(path)
            if not holding:
                return outcomes
        holding = [p for p in loc.open_events() if self._holds(p)]
        outcomes += [
            FileOutcome(
                "collector_events",
                loc.relative(p),
                status="failed",
                detail="their events keep arriving at the running collector",
            )
            for p in holding
        ]
        return outcomes

    def _holds(self, path: Path) -> bool:
        try:
            return bool(
                rewrite_lines(path, self.matcher, EVENT_KEYS, lock=False, dry_run=True).removed
            )
        except FileNotFoundError:
            return False

    def _remove_stale_temp_files(self) -> None:
        folders = [*self.locations.folders(), *self.locations.exports_dirs]
        for folder in folders:
            if folder.is_dir():
                for tmp in folder.rglob(f".*{TMP_SUFFIX}"):
                    with contextlib.suppress(OSError):
                        tmp.unlink()

    def move_cursor(self, con: duckdb.DuckDBPyConnection) -> int:
        """Move the events connector's byte offsets of rewritten files; returns how many."""
        if not self.offsets:
            return 0
        source, stream = EVENTS_CURSOR
        row = None
        with contextlib.suppress(duckdb.CatalogException):
            row = con.execute(
                "select cursor from ops.connector_state where source = ? and stream = ?",
                [source, stream],
            ).fetchone()
        if not row or not row[0]:
            return 0
        state = json.loads(row[0])
        offsets = state.get("files", {})
        moved = 0
        for key, rewrite in self.offsets.items():
            if key in offsets:
                new = rewrite.offset_after(int(offsets[key]))
                moved += new != offsets[key]
                offsets[key] = new
        con.execute(
            "update ops.connector_state set cursor = ? where source = ? and stream = ?",
            [json.dumps(state, sort_keys=True, default=str), source, stream],
        )
        return moved


def describe(outcome: FileOutcome) -> str:
    if outcome.status != "ok":
        return outcome.detail
    unit = "row(s)" if outcome.kind == "files_export" else "line(s)"
    text = f"{outcome.kind}: {outcome.removed} {unit} removed, {outcome.kept} kept"
    if outcome.kind == "files_export":
        text += "; copies a reader already took from the folder are beyond reach"
    return text
