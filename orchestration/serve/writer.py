"""Durable event files: fsynced JSONL with group commit, rotation, recovery and dedup.

The collector answers 200 only once an event is on disk, so every request waits for an
``fsync``. One writer thread owns the open file and commits whatever requests arrived while the
previous ``fsync`` ran in a single write + ``fsync`` (group commit): latency stays one disk flush
while throughput grows with concurrency.

File protocol (what the events connector relies on): the file being written is
``events-<utc>-<pid>-<seq>.jsonl.open``; on rotation (size or age) or shutdown it is renamed to
``.jsonl``, so the connector, which loads ``*.jsonl``, never sees a file that may still grow.
After a crash, the next start renames leftover ``.open`` files, dropping a torn last line
(never acknowledged, since a line is acknowledged only after its ``fsync``).

A privacy deletion (``cdp forget``) rewrites published files; the file still being written is
not its to touch, so it drops a ``.rotate-request`` flag in the folder and the writer publishes
the open file within ``ROTATE_POLL_S``. Files several writers append to (the rejected-message
log, the trigger firing log) are appended under an exclusive ``flock`` (``append_locked``), which
the rewrite holds too, so no line is appended to a file that is being replaced.

Deduplication by ``messageId`` covers the recent past (capacity-bounded, reloaded from recent
files at start); the warehouse keys events on ``message_id`` too, so an older duplicate that
slips through is still stored once.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import queue
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestration.serve.spec import encode_line

log = logging.getLogger(__name__)

OPEN_SUFFIX = ".jsonl.open"
CLOSED_SUFFIX = ".jsonl"
REJECTED_DIR = "_rejected"
LOCK_NAME = ".collector.lock"
ROTATE_REQUEST = ".rotate-request"  # a deletion asks the writer to publish its open file
ROTATE_POLL_S = 0.25
LOCK_WAIT_S = 1.0  # a deletion holds the folder lock briefly while it rewrites leftovers
_MESSAGE_ID = re.compile(rb'"messageId":\s*"((?:[^"\\]|\\.)*)"')


@dataclass
class WriteResult:
    """What one submission became: the events newly stored, and how many were duplicates."""

    stored: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0


@dataclass
class _Item:
    events: list[dict[str, Any]]
    rejects: list[dict[str, Any]]
    future: Future


@dataclass
class _Command:
    name: str  # "rotate" | "stop"
    future: Future


class CollectorLocked(RuntimeError):
    """Another collector process writes to the same folder."""


class SeenIds:
    """The most recent ``capacity`` message ids, oldest forgotten first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, message_id: str) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, message_id: str) -> None:
        self._ids[message_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


def append_locked(path: Path, data: bytes) -> None:
    """Append whole lines durably under an exclusive ``flock`` on the file.

    A privacy rewrite takes the same lock, reads, and renames a new file over the path before
    releasing it; an appender that was waiting then holds a lock on the replaced file, sees that
    the path names another file now, and appends to the new one instead. So no line lands in a
    file that is being replaced (lost) or is written twice.
    """
    while True:
        with path.open("ab") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                mine = os.fstat(f.fileno())
                try:
                    current = os.stat(path)
                except FileNotFoundError:
                    continue
                if (mine.st_dev, mine.st_ino) != (current.st_dev, current.st_ino):
                    continue
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
                return
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder so that created and renamed names are durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EventLog:
    """The collector's durable, deduplicating event store in ``folder``.

    ``submit`` may be called from any thread; its future resolves once the events are fsynced
    (or fails with the OS error, in which case nothing was acknowledged).
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        rotate_bytes: int = 64 * 1024 * 1024,
        rotate_seconds: float = 60.0,
        dedup_capacity: int = 500_000,
        dedup_window_s: float = 24 * 3600,
    ) -> None:
        self.folder = Path(folder)
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.dedup_window_s = dedup_window_s
        self.seen = SeenIds(dedup_capacity)
        self._queue: queue.Queue[_Item | _Command] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._file = None
        self._path: Path | None = None
        self._opened_at = 0.0
        self._checked_request_at = 0.0
        self._size = 0
        self._seq = 0
        self.files_closed = 0
        self.commits = 0  # write + fsync groups; fewer than submissions under concurrency

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> EventLog:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        self.recover()
        self._load_seen()
        self._thread = threading.Thread(target=self._run, name="event-log", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Commit what is queued, close and publish the open file, release the folder."""
        if self._thread is not None:
            self._queue.put(_Command("stop", Future()))
            self._thread.join()
            self._thread = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> EventLog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _acquire_lock(self) -> None:
        fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                os.close(fd)
                raise CollectorLocked(
                    f"another collector (or a privacy deletion) holds {self.folder}"
                ) from None
        self._lock_fd = fd

    # -- recovery --------------------------------------------------------------------------
    def recover(self) -> list[Path]:
        """Publish ``.open`` files a killed collector left, without a torn last line."""
        published = []
        for path in sorted(self.folder.glob(f"*{OPEN_SUFFIX}")):
            data = path.read_bytes()
            keep = len(data)
            if data and not data.endswith(b"\n"):
                tail_start = data.rfind(b"\n") + 1
                try:
                    json.loads(data[tail_start:])
                    data += b"\n"  # written whole, only the newline is missing
                    keep = len(data)
                except ValueError:
                    keep = tail_start
                    log.warning(
                        "%s: dropped a torn last line of %d bytes (never acknowledged)",
                        path.name,
                        len(data) - tail_start,
                    )
            with path.open("r+b") as f:
                f.write(data[:keep])
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())
            target = path.with_name(path.name.removesuffix(".open"))
            if keep == 0:
                path.unlink()
            else:
                os.replace(path, target)
                published.append(target)
        if published:
            fsync_path(self.folder)
            log.info("recovered %d event file(s) left open by a previous collector", len(published))
        return published

    def _load_seen(self) -> None:
        """Remember the message ids of recent files so a client retry after a restart dedups."""
        horizon = time.time() - self.dedup_window_s
        recent = [p for p in self.folder.glob(f"*{CLOSED_SUFFIX}") if p.stat().st_mtime >= horizon]
        ids: list[str] = []
        for path in sorted(recent, key=lambda p: p.stat().st_mtime, reverse=True):
            with path.open("rb") as f:
                for line in f:
                    match = _MESSAGE_ID.search(line)
                    if match:
                        ids.append(match.group(1).decode("utf-8", errors="replace"))
            if len(ids) >= self.seen.capacity:
                break
        for message_id in reversed(ids[: self.seen.capacity]):
            self.seen.add(message_id)

    # -- writing ---------------------------------------------------------------------------
    def submit(
        self, events: list[dict[str, Any]], rejects: list[dict[str, Any]] | None = None
    ) -> Future:
        """Queue events (and rejected messages for quarantine); the future gives a WriteResult."""
        if self._thread is None:
            raise RuntimeError("the event log is not started")
        future: Future = Future()
        self._queue.put(_Item(events, rejects or [], future))
        return future

    def rotate(self) -> None:
        """Commit what is queued, then close and publish the current file now."""
        done: Future = Future()
        self._queue.put(_Command("rotate", done))
        done.result()

    def _due(self) -> bool:
        """The open file is big or old enough to publish, or a deletion asked for it."""
        if self._file is None:
            return False
        now = time.monotonic()
        if self._size >= self.rotate_bytes or now - self._opened_at >= self.rotate_seconds:
            return True
        if now - self._checked_request_at < ROTATE_POLL_S:
            return False
        self._checked_request_at = now
        return (self.folder / ROTATE_REQUEST).exists()

    def _run(self) -> None:
        while True:
            timeout = None
            if self._file is not None:
                remaining = self._opened_at + self.rotate_seconds - time.monotonic()
                timeout = max(0.05, min(ROTATE_POLL_S, remaining))
            try:
                first = self._queue.get(timeout=timeout)
            except queue.Empty:
                if self._due():
                    self._close_file()
                continue
            batch = [first]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            items = [b for b in batch if isinstance(b, _Item)]
            commands = [b for b in batch if isinstance(b, _Command)]
            if items:
                self._commit(items)
            if commands or self._due():
                self._close_file()
            for command in commands:
                command.future.set_result(None)
            if any(c.name == "stop" for c in commands):
                return

    def _commit(self, items: list[_Item]) -> None:
        results = []
        payload: list[bytes] = []
        rejected: list[bytes] = []
        pending: set[str] = set()
        for item in items:
            result = WriteResult()
            for event in item.events:
                message_id = event["messageId"]
                if message_id in self.seen or message_id in pending:
                    result.duplicates += 1
                    continue
                pending.add(message_id)
                payload.append(encode_line(event))
                result.stored.append(event)
            rejected.extend(encode_line(r) for r in item.rejects)
            results.append(result)
        try:
            if rejected:
                self._write_rejected(b"".join(rejected))
            if payload:
                self._write(b"".join(payload))
        except OSError as exc:
            log.error("event write failed, nothing of this group is acknowledged: %s", exc)
            self._abandon_file()
            for item in items:
                item.future.set_exception(exc)
            return
        for message_id in pending:
            self.seen.add(message_id)
        for item, result in zip(items, results, strict=True):
            item.future.set_result(result)

    def _write(self, data: bytes) -> None:
        if self._file is None:
            self._open_file()
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._size += len(data)
        self.commits += 1

    def _write_rejected(self, data: bytes) -> None:
        folder = self.folder / REJECTED_DIR
        folder.mkdir(exist_ok=True)
        day = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
        append_locked(folder / f"rejected-{day}.jsonl.rejected", data)

    def _open_file(self) -> None:
        self._seq += 1
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        self._path = self.folder / f"events-{stamp}-{os.getpid()}-{self._seq:06d}{OPEN_SUFFIX}"
        self._file = self._path.open("ab")
        fsync_path(self.folder)  # the file's name must survive a power cut with its data
        self._opened_at = time.monotonic()
        self._size = 0

    def _close_file(self) -> None:
        """Publish the open file; after an OS error it stays ``.open`` until recovery."""
        if self._file is None:
            return
        path, file, self._file, self._path = self._path, self._file, None, None
        try:
            file.close()
            os.replace(path, path.with_name(path.name.removesuffix(".open")))
            fsync_path(self.folder)
        except OSError:
            log.exception("could not publish %s; it is recovered at the next start", path.name)
            return
        self.files_closed += 1
        (self.folder / ROTATE_REQUEST).unlink(missing_ok=True)

    def _abandon_file(self) -> None:
        """After a failed write the file may hold a torn line: publish it through recovery."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
            self._path = None
            try:
                self.recover()
            except OSError:
                log.exception("could not recover the event file after a write error")

    @property
    def current_path(self) -> Path | None:
        return self._path


def read_events(folder: str | Path) -> list[dict[str, Any]]:
    """Every stored event of the published (``.jsonl``) files in ``folder``, in file order."""
    events = []
    for path in sorted(Path(folder).glob(f"*{CLOSED_SUFFIX}")):
        with path.open("rb") as f:
            events.extend(json.loads(line) for line in f if line.strip())
    return events
