"""The shared machinery of the local vendor fakes: real HTTP on 127.0.0.1, one thread per server.

Each vendor fake is a ``FakeServer`` subclass that registers routes with ``@route(method, pattern)``
and keeps its state in memory. The base class gives every fake the behaviours a client must
survive against the real API:

- a sliding-window rate limit answering 429 with ``Retry-After`` (``rate_limit=(n, seconds)``),
- injected faults: a share of requests answered 500/502/503 (``fault_rate``), seeded,
- an authentication check (``check_auth``) answering the vendor's 401 body,
- a request log (method, path, status) tests use to count calls.

The fakes are used by the demo and the tests alike, so they follow the vendors' documented shapes.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

Handler = Callable[..., "Response"]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, default=str).encode()


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    """Mark a FakeServer method as the handler of ``method`` on a path regex (named groups)."""

    def deco(fn: Handler) -> Handler:
        fn._route = (method.upper(), re.compile(f"^{pattern}$"))  # type: ignore[attr-defined]
        return fn

    return deco


@dataclass
class Call:
    method: str
    path: str
    status: int
    at: float


class FakeServer:
    """Base of the vendor fakes. Subclasses add ``@route`` handlers and their own state."""

    name = "fake"
    retry_after_seconds = 1

    def __init__(
        self,
        *,
        rate_limit: tuple[int, float] | None = None,
        fault_rate: float = 0.0,
        seed: int = 0,
        token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.rate_limit = rate_limit
        self.fault_rate = fault_rate
        self.token = token
        self._rng = random.Random(seed)
        self._window: deque[float] = deque()
        self._lock = threading.RLock()
        self.calls: list[Call] = []
        self._routes = [
            getattr(self, attr)
            for attr in dir(type(self))
            if hasattr(getattr(type(self), attr, None), "_route")
        ]
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-fake",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviours shared by every vendor ---------------------------------------------------
    def check_auth(self, request: Request) -> Response | None:
        """Return an error response when the request's credentials are wrong (override)."""
        if self.token is None:
            return None
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return Response(401, {"error": "unauthorized"})
        return None

    def rate_limited_response(self) -> Response:
        return Response(
            429,
            {"error": "rate limit exceeded"},
            {"Retry-After": str(self.retry_after_seconds)},
        )

    def fault_response(self) -> Response:
        return Response(self._rng.choice([500, 502, 503]), {"error": "injected fault"})

    def _admit(self) -> bool:
        if self.rate_limit is None:
            return True
        limit, seconds = self.rate_limit
        with self._lock:
            now = time.monotonic()  # read under the lock: a stale time miscounts the window
            while self._window and now - self._window[0] >= seconds:
                self._window.popleft()
            if len(self._window) >= limit:
                return False
            self._window.append(now)
            return True

    def count(self, method: str | None = None, path_prefix: str = "") -> int:
        """How many requests reached a handler (not rejected by auth, rate limit or fault)."""
        return sum(
            1
            for c in self.calls
            if (method is None or c.method == method)
            and c.path.startswith(path_prefix)
            and c.status < 429
        )

    def dispatch(self, request: Request) -> Response:
        denied = self.check_auth(request)
        if denied is not None:
            return denied
        if not self._admit():
            return self.rate_limited_response()
        with self._lock:
            faulty = self.fault_rate and self._rng.random() < self.fault_rate
        if faulty:
            return self.fault_response()
        for handler in self._routes:
            method, pattern = handler._route
            match = pattern.match(request.path)
            if match and method == request.method:
                request.params = match.groupdict()
                with self._lock:
                    return handler(request)
        return Response(404, {"error": f"no route for {request.method} {request.path}"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stall

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("Content-Encoding") == "gzip" and body:
                    body = gzip.decompress(body)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                try:
                    response = server.dispatch(request)
                except Exception as exc:  # a bug in a fake must be visible, not a hang
                    log.exception("fake %s failed", server.name)
                    response = Response(500, {"error": f"fake crashed: {exc}"})
                payload = response.encode()
                server.calls.append(Call(self.command, parts.path, response.status, time.time()))
                self.send_response(response.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in response.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        return _Handler
