"""Run connectors into the warehouse: read pages, commit them in batches, record the figures.

Pages are gathered into batches of ``CDP_INGEST_BATCH_ROWS`` records so that one DuckDB
transaction carries thousands of rows (throughput), while the cursor that goes with a batch is
the one of its last page (resumability). A source without credentials is skipped; a source
that fails (bad credentials, retries exhausted) fails alone, and the run goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

from connectors import settings
from connectors.base import Connector, ConnectorError, NotConfigured, Page
from connectors.loader import Warehouse
from connectors.registry import SOURCES

log = logging.getLogger(__name__)


@dataclass
class StreamResult:
    """What one stream's run did; also a row of ``ops.ingest_runs``."""

    source: str
    stream: str
    status: str  # "ok" | "skipped" | "failed"
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    pages: int = 0
    retries: int = 0
    duration_s: float = 0.0
    message: str | None = None
    rows_suppressed: int = 0

    def describe(self) -> str:
        return (
            f"{self.source}.{self.stream} {self.status}: read={self.rows_read} "
            f"loaded={self.rows_loaded} quarantined={self.rows_quarantined} "
            f"suppressed={self.rows_suppressed} pages={self.pages} retries={self.retries} "
            f"{self.duration_s:.2f}s" + (f" ({self.message})" if self.message else "")
        )


def _resolve_sources(sources: list[str] | None) -> list[str]:
    if not sources:
        return list(SOURCES)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown sources {unknown}; known: {', '.join(SOURCES)}")
    return list(dict.fromkeys(sources))


def ingest(
    db_path: str | Path | None = None, sources: list[str] | None = None
) -> list[StreamResult]:
    """Load every stream of ``sources`` (all by default) into ``db_path`` (the warehouse)."""
    results: list[StreamResult] = []
    run_id = uuid.uuid4().hex[:12]
    with Warehouse(db_path or settings.duckdb_path()) as wh:
        for source in _resolve_sources(sources):
            cls = SOURCES[source]
            try:
                streams = list(cls.stream_specs())
            except Exception as exc:  # noqa: BLE001 - a broken declaration fails its source only
                result = StreamResult(source, "*", "failed", message=f"configuration: {exc}")
                log.error("source %s failed: %s", source, result.message)
                wh.record_run(run_id, result, dt.datetime.now(dt.UTC))
                results.append(result)
                continue
            results += _run_source(wh, run_id, source, cls, streams)
    return results


def ingest_stream(source: str, stream: str, db_path: str | Path | None = None) -> StreamResult:
    """Load one stream (orchestration materializes streams one asset at a time)."""
    cls = SOURCES[_resolve_sources([source])[0]]
    if stream not in cls.stream_specs():
        raise ValueError(f"unknown stream {source}.{stream}; known: {list(cls.stream_specs())}")
    with Warehouse(db_path or settings.duckdb_path()) as wh:
        return _run_source(wh, uuid.uuid4().hex[:12], source, cls, [stream])[0]


def _run_source(
    wh: Warehouse, run_id: str, source: str, cls: type[Connector], streams: list[str]
) -> list[StreamResult]:
    started = dt.datetime.now(dt.UTC)
    try:
        connector = cls.from_env()
    except Exception as exc:  # noqa: BLE001 - absent: skipped; broken: failed; the run goes on
        status = "skipped" if isinstance(exc, NotConfigured) else "failed"
        message = settings.mask_secrets(str(exc))
        if status == "skipped":
            log.warning("source %s skipped: %s", source, message)
        else:
            log.error("source %s failed: %s", source, message)
        results = [StreamResult(source, s, status, message=message) for s in streams]
        for r in results:
            wh.record_run(run_id, r, started)
        return results
    results = []
    try:
        for stream in streams:
            result, fatal = _run_stream(wh, run_id, connector, source, stream)
            results.append(result)
            if fatal:
                break
    finally:
        connector.close()
    # a source-wide failure (credentials) fails the streams not attempted, with the same message
    for stream in streams[len(results) :]:
        r = StreamResult(source, stream, "failed", message=results[-1].message)
        wh.record_run(run_id, r, started)
        results.append(r)
    return results


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(pages: Iterator[Page], max_records: int = 10_000) -> Generator[Page, None, None]:
    """Read the next pages in a thread while the current batch is loaded.

    Fetching (network, JSON) and loading (DuckDB, which releases the GIL) then overlap. The
    reader runs up to ``max_records`` ahead (a batch's worth, so it keeps fetching while a whole
    batch commits) and at least one page. Order is kept, so cursors still commit in sequence; a
    reader error arrives after the pages read before it. Closing the generator stops the reader
    at its next page.
    """
    buffer: deque = deque()
    held = 0  # records in the buffer
    cond = threading.Condition()
    done = object()
    stop = False

    def put(item: object, size: int) -> bool:
        nonlocal held
        with cond:
            while not stop and buffer and held + size > max_records:
                cond.wait()
            if stop:
                return False
            buffer.append((item, size))
            held += size
            cond.notify_all()
            return True

    def reader() -> None:
        try:
            for page in pages:
                if not put(page, len(page.records)):
                    return
            put(done, 0)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(_Failed(exc), 0)
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=reader, name="ingest-reader", daemon=True)
    thread.start()
    try:
        while True:
            with cond:
                while not buffer:
                    cond.wait()
                item, size = buffer.popleft()
                held -= size
                cond.notify_all()
            if item is done:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        with cond:
            stop = True
            cond.notify_all()
        thread.join(timeout=30)


def _run_stream(
    wh: Warehouse, run_id: str, connector: Connector, source: str, stream: str
) -> tuple[StreamResult, bool]:
    """Run one stream; the flag says the whole source is unusable (e.g. bad credentials)."""
    spec = connector.stream_specs()[stream]
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    retries0 = connector.retries
    result = StreamResult(source, stream, "ok")
    batch_rows = settings.batch_rows()
    pending: list[str] = []
    rejects: list[tuple[str, str]] = []
    pending_state = None
    dirty = fatal = False
    objects = True  # every record pending is known to be a JSON object

    def flush() -> None:
        nonlocal pending, rejects, pending_state, dirty, objects
        if not dirty:
            return
        batch_id = f"{run_id}-{uuid.uuid4().hex[:8]}"
        figures = wh.load_batch(source, spec, pending, pending_state, batch_id, rejects, objects)
        result.rows_loaded += figures.loaded
        result.rows_quarantined += figures.quarantined
        result.rows_suppressed += figures.suppressed
        pending, rejects, pending_state, dirty, objects = [], [], None, False, True

    pages = prefetch(connector.read(stream, wh.get_state(source, stream)), batch_rows)
    try:
        for page in pages:
            result.pages += 1
            result.rows_read += len(page.records) + len(page.rejects)
            pending.extend(page.records)
            rejects.extend(page.rejects)
            objects = objects and (page.objects or not page.records)
            if page.state is not None:
                pending_state = page.state
            dirty = dirty or bool(page.records or page.rejects) or page.state is not None
            if len(pending) >= batch_rows:
                flush()
        flush()
    except Exception as exc:  # noqa: BLE001 - one stream's failure must not stop the others
        result.status = "failed"
        if isinstance(exc, ConnectorError):
            result.message, fatal = settings.mask_secrets(str(exc)), exc.source_wide
        else:
            result.message = settings.mask_secrets(f"{type(exc).__name__}: {exc}")
        log.error("%s.%s failed: %s", source, stream, result.message)
        pages.close()
        # pages read before the failure are whole, each with a valid cursor: keep the progress
        try:
            flush()
        except Exception as flush_exc:  # noqa: BLE001
            log.error(
                "%s.%s: could not keep the pages read before the failure: %s",
                source,
                stream,
                flush_exc,
            )
    result.retries = connector.retries - retries0
    result.duration_s = round(time.perf_counter() - t0, 3)
    if result.rows_quarantined:
        log.warning(
            "%s.%s: %d records quarantined (see ops.quarantine)",
            source,
            stream,
            result.rows_quarantined,
        )
    log.info("%s", result.describe())
    wh.record_run(run_id, result, started)
    return result, fatal
