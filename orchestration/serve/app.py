"""``cdp collect``: the Segment-compatible collector and the profile API, in one ASGI app.

Write endpoints follow Segment's HTTP Tracking API (``/v1/batch``, ``/v1/track``, ...): basic
auth with the write key as user name (or ``writeKey`` in the body), gzip bodies, Segment's size
limits, ``messageId`` dedup. A request is answered 200 only after its events are fsynced
(``writer.EventLog``); then they go to the trigger engine. A batch with some invalid messages
stores the valid ones, quarantines the others with their reason and answers 400 naming them,
so a client that drops a refused batch loses nothing that was valid.

Read endpoints (``/v1/profiles/...``) answer from the in-memory profile snapshot behind a
bearer token. One process serves both; it never opens the warehouse.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from orchestration.serve import config
from orchestration.serve.profiles import ProfileStore, SnapshotReader
from orchestration.serve.spec import (
    MAX_WIRE_BYTES,
    PayloadError,
    decode_body,
    iso_now,
    parse_object,
    prepare,
)
from orchestration.serve.triggers import FiringLog, TriggerEngine, load_rules
from orchestration.serve.writer import EventLog

log = logging.getLogger(__name__)

SINGLE_TYPES = ("track", "identify", "page", "screen", "group", "alias")
SNAPSHOT_POLL_S = 1.0
MAX_PROFILE_EVENTS = 1000


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"success": False, "code": code, "message": message, **extra}, status)


def _basic_user(header: str | None) -> str | None:
    """The user name of a Basic authorization header (Segment's libraries put the key there)."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0]


def _key_ok(candidate: str | None, keys: frozenset[str]) -> bool:
    return candidate is not None and any(
        hmac.compare_digest(candidate.encode(), k.encode()) for k in keys
    )


async def _read_body(request: Request) -> bytes:
    """The raw body, refusing to buffer more than any valid request could be."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_WIRE_BYTES:
            raise PayloadError(400, "payload_too_large", "request body over the 500 KB limit")
        chunks.append(chunk)
    return b"".join(chunks)


class Collector:
    """The parts one collector process holds: the event log, the snapshot, the triggers."""

    def __init__(
        self,
        events_dir: Path,
        write_keys: frozenset[str],
        api_token: str | None,
        snapshot_dir: Path,
        triggers_path: Path | None,
        firings_dir: Path,
        slack_url: str | None,
        webhook_secret: str | None,
        rotate_bytes: int,
        rotate_seconds: float,
    ) -> None:
        self.write_keys = write_keys
        self.api_token = api_token
        self.log = EventLog(events_dir, rotate_bytes=rotate_bytes, rotate_seconds=rotate_seconds)
        self.snapshot = SnapshotReader(snapshot_dir)
        rules = load_rules(triggers_path) if triggers_path is not None else []
        self.triggers = TriggerEngine(
            rules,
            self.snapshot.store,
            FiringLog(firings_dir),
            slack_url=slack_url,
            webhook_secret=webhook_secret,
        )
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.accepted = 0

    def start(self) -> None:
        if not self.write_keys:
            log.warning("CDP_WRITE_KEYS is not set: every write request will be refused (401)")
        if not self.api_token:
            log.warning("CDP_API_TOKEN is not set: the profile API refuses every request (401)")
        self.log.start()
        self.snapshot.refresh_if_changed()
        self.triggers.start()
        self._watcher = threading.Thread(target=self._watch, name="snapshot-watch", daemon=True)
        self._watcher.start()
        log.info(
            "collector writing to %s (%d trigger rules)", self.log.folder, len(self.triggers.rules)
        )

    def stop(self) -> None:
        self._stop.set()
        self.log.close()
        self.triggers.stop()

    def _watch(self) -> None:
        while not self._stop.wait(SNAPSHOT_POLL_S):
            try:
                self.snapshot.refresh_if_changed()
            except Exception:  # a half-broken snapshot must not stop the collector
                log.exception("could not load the new profile snapshot; keeping the old one")

    # -- writes ----------------------------------------------------------------------------
    async def ingest(self, request: Request, endpoint_type: str | None) -> JSONResponse:
        received = time.monotonic()
        header_key = _basic_user(request.headers.get("authorization"))
        if header_key is not None and not _key_ok(header_key, self.write_keys):
            return _error(401, "unauthorized", "invalid write key")
        try:
            body = decode_body(await _read_body(request), request.headers.get("content-encoding"))
            payload = parse_object(body)
            if header_key is None and not _key_ok(payload.get("writeKey"), self.write_keys):
                return _error(
                    401, "unauthorized", "a write key is required (basic auth user or writeKey)"
                )
            prepared = prepare(payload, endpoint_type, len(body))
        except PayloadError as exc:
            return JSONResponse(exc.body(), exc.status)
        rejects = [
            {"receivedAt": iso_now(), "reason": r.reason, "index": r.index, "message": r.raw}
            for r in prepared.rejected
        ]
        try:
            result = await asyncio.wrap_future(self.log.submit(prepared.events, rejects))
        except OSError as exc:
            log.error("could not make events durable: %s", exc)
            return _error(503, "storage_unavailable", "events could not be stored; retry")
        self.accepted += len(result.stored)
        self.triggers.submit(result.stored, received)
        if prepared.rejected:
            reasons = "; ".join(f"#{r.index}: {r.reason}" for r in prepared.rejected[:5])
            return _error(
                400,
                "invalid_events",
                f"{len(prepared.rejected)} message(s) refused: {reasons}",
                accepted=len(prepared.events),
                rejected=[r.summary() for r in prepared.rejected],
            )
        return JSONResponse({"success": True})

    # -- reads -----------------------------------------------------------------------------
    def authorized(self, request: Request) -> JSONResponse | None:
        if not self.api_token:
            return _error(401, "unauthorized", "the profile API is disabled: set CDP_API_TOKEN")
        header = request.headers.get("authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.api_token.encode()
        ):
            return _error(401, "unauthorized", "a valid bearer token is required")
        return None

    def store_or_error(self) -> tuple[ProfileStore | None, JSONResponse | None]:
        store = self.snapshot.store()
        if store is None:
            return None, _error(
                503, "no_snapshot", "no profile snapshot yet: it is written after each build"
            )
        return store, None


def create_app(
    *,
    events_dir: str | Path | None = None,
    write_keys: set[str] | frozenset[str] | None = None,
    api_token: str | None = None,
    snapshot_dir: str | Path | None = None,
    triggers_path: str | Path | None = None,
    firings_dir: str | Path | None = None,
    slack_url: str | None = None,
    webhook_secret: str | None = None,
    rotate_bytes: int | None = None,
    rotate_seconds: float | None = None,
) -> FastAPI:
    """The collector + profile API app; every argument left out comes from the environment."""
    collector = Collector(
        events_dir=Path(events_dir) if events_dir is not None else config.events_dir(),
        write_keys=frozenset(write_keys) if write_keys is not None else config.write_keys(),
        api_token=api_token if api_token is not None else config.api_token(),
        snapshot_dir=Path(snapshot_dir) if snapshot_dir is not None else config.snapshot_dir(),
        triggers_path=Path(triggers_path) if triggers_path is not None else config.triggers_path(),
        firings_dir=Path(firings_dir) if firings_dir is not None else config.firings_dir(),
        slack_url=slack_url if slack_url is not None else config.env("SLACK_WEBHOOK_URL"),
        webhook_secret=webhook_secret
        if webhook_secret is not None
        else config.env("CDP_WEBHOOK_SECRET"),
        rotate_bytes=rotate_bytes if rotate_bytes is not None else config.rotate_bytes(),
        rotate_seconds=rotate_seconds if rotate_seconds is not None else config.rotate_seconds(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        collector.start()
        try:
            yield
        finally:
            collector.stop()

    app = FastAPI(
        title="composable-cdp collector", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.collector = collector

    @app.post("/v1/batch")
    @app.post("/v1/import")
    async def batch(request: Request) -> JSONResponse:
        return await collector.ingest(request, None)

    def single(kind: str):
        async def handler(request: Request) -> JSONResponse:
            return await collector.ingest(request, kind)

        handler.__name__ = f"collect_{kind}"
        return handler

    for kind in SINGLE_TYPES:
        app.add_api_route(f"/v1/{kind}", single(kind), methods=["POST"])

    @app.get("/v1/profiles/{identifier}/events")
    def profile_events(identifier: str, request: Request, limit: int = 50) -> JSONResponse:
        denied = collector.authorized(request)
        if denied is not None:
            return denied
        if not 1 <= limit <= MAX_PROFILE_EVENTS:
            return _error(400, "invalid_limit", f"limit is between 1 and {MAX_PROFILE_EVENTS}")
        store, error = collector.store_or_error()
        if error is not None:
            return error
        found = store.resolve(identifier)
        if found is None:
            return _error(404, "not_found", "no customer holds that identifier")
        events = store.events_of(found[0], limit)
        return JSONResponse({"customer_id": found[0], "events": events, "count": len(events)})

    @app.get("/v1/profiles/{identifier}")
    def profile(identifier: str, request: Request) -> JSONResponse:
        denied = collector.authorized(request)
        if denied is not None:
            return denied
        store, error = collector.store_or_error()
        if error is not None:
            return error
        found = store.lookup(identifier)
        if found is None:
            return _error(404, "not_found", "no customer holds that identifier")
        return JSONResponse(found)

    @app.get("/health")
    def health() -> dict[str, Any]:
        store = collector.snapshot.store()
        return {
            "ok": True,
            "accepted": collector.accepted,
            "snapshot": store.version.name if store is not None else None,
            "rules": len(collector.triggers.rules),
        }

    return app


def serve(host: str = "127.0.0.1", port: int = 8088) -> None:
    """Run the collector in this process until interrupted (``cdp collect``)."""
    uvicorn.run(create_app(), host=host, port=port, log_level="info", access_log=False)


class ServerThread:
    """The app on a real socket in a background thread: for tests, benchmarks and the demo."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        )
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def collector(self) -> Collector:
        return self.app.state.collector

    def _run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the collector did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
