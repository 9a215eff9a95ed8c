"""Web/app events: Segment-spec JSON lines from files in ``CDP_EVENTS_DIR``.

The cursor is the byte offset reached in each file, so a file is read once, a file the collector
is still appending to is picked up where the last run stopped, and only whole lines are taken
(a line still being written waits for the next run). Events are immutable and keyed by
``messageId``: a message delivered twice (client retries, overlapping exports) is stored once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connectors import settings
from connectors.base import Column, Connector, NotConfigured, Page, StreamSpec, specs_by_name

log = logging.getLogger(__name__)

PATTERNS = ("*.jsonl", "*.ndjson")  # not *.json: one document per file is not JSON lines
# a file untouched this long is complete: its last line is taken even without a newline
SETTLED_SECONDS = 5.0

EVENTS = StreamSpec(
    name="events",
    primary_key="message_id",
    on_conflict="ignore",
    columns=(
        Column("message_id", path="$.messageId"),
        Column("type"),
        Column("event"),
        Column("name"),
        Column("user_id", path="$.userId"),
        Column("anonymous_id", path="$.anonymousId"),
        Column("email", path="$.traits.email"),
        Column("page_path", path="$.context.page.path"),
        Column("properties", "json"),
        Column("timestamp", "timestamp"),
    ),
    identifiers={"email": "email", "user_id": "user_id", "anonymous_id": "anonymous_id"},
)


class EventsConnector(Connector):
    name = "events"
    specs = specs_by_name(EVENTS)

    def __init__(self, events_dir: Path, batch_lines: int | None = None) -> None:
        self.events_dir = events_dir
        self.batch_lines = batch_lines or settings.batch_rows()

    @classmethod
    def from_env(cls) -> EventsConnector:
        folder = settings.env("CDP_EVENTS_DIR")
        if not folder:
            raise NotConfigured("CDP_EVENTS_DIR is not set (the folder of Segment JSONL files)")
        if not Path(folder).is_dir():
            raise NotConfigured(f"CDP_EVENTS_DIR={folder} is not a folder")
        return cls(Path(folder))

    def files(self) -> list[Path]:
        found = {p for pattern in PATTERNS for p in self.events_dir.rglob(pattern) if p.is_file()}
        return sorted(found)

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        offsets: dict[str, int] = dict((state or {}).get("files", {}))
        for path in self.files():
            key = path.relative_to(self.events_dir).as_posix()
            offset = offsets.get(key, 0)
            stat = path.stat()
            if stat.st_size < offset:
                log.warning("%s shrank (rotated?): reading it again from the start", key)
                offset = 0
            if stat.st_size == offset:
                continue
            if offset and not _at_line_start(path, offset):
                # a file rewritten (by `cdp forget`) before its cursor moved: the offset may point
                # mid-line; read it again (events are keyed by message id: no doubles)
                log.warning("%s: cursor not at a line start, reading it again from the start", key)
                offset = 0
            settled = time.time() - stat.st_mtime > SETTLED_SECONDS
            for lines, new_offset in self._chunks(path, offset, settled):
                offsets[key] = new_offset
                yield Page(lines, {"files": dict(offsets)})

    def _chunks(self, path: Path, offset: int, settled: bool) -> Iterator[tuple[list[str], int]]:
        """Whole lines from ``offset``, in chunks, each with the offset just past it."""
        with path.open("rb") as f:
            f.seek(offset)
            yielded = offset
            lines: list[str] = []
            for raw in f:
                if not raw.endswith(b"\n") and not settled:
                    break  # a line still being written
                offset += len(raw)
                text = raw.decode("utf-8", errors="replace").strip()
                if text:
                    lines.append(text)
                if len(lines) >= self.batch_lines:
                    yield lines, offset
                    lines, yielded = [], offset
            if offset != yielded:
                yield lines, offset


def _at_line_start(path: Path, offset: int) -> bool:
    """Whether ``offset`` follows a newline, i.e. where a whole line starts."""
    with path.open("rb") as f:
        f.seek(offset - 1)
        return f.read(1) == b"\n"
