"""HTTP for destinations: one rate limiter per destination account, retries, ``Retry-After``.

Every sync to the same account (same destination, endpoint and credential) shares one
``RateLimiter``, so two syncs running in one process cannot together exceed the vendor's quota.
The limiter is a sliding window like the vendors' own, kept a little under the published limit
because the server timestamps arrivals later than we timestamp departures. A 429 pauses the whole
account for ``Retry-After``; 5xx and connection errors are retried with exponential backoff and
jitter; other 4xx are the caller's to interpret (per-row validation, a rejected batch).
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import requests

log = logging.getLogger(__name__)

RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


class HttpError(Exception):
    """A response the client will not retry (or retries exhausted): status and vendor message."""

    def __init__(self, status: int | None, message: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.body = body

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in RETRYABLE


class RateLimiter:
    """At most ``limit`` requests in any ``seconds`` window, shared by threads; honours pauses.

    A request occupies its slot from the moment it is sent until its answer came back, and the
    window is counted from that answer: the server saw the request at some moment in between,
    so ``limit`` answers more than ``seconds`` old guarantee the server's own sliding window has
    room, whatever the latency (timestamps taken at send time let jittery requests bunch up).
    """

    IN_FLIGHT = float("inf")

    def __init__(self, limit: int, seconds: float, margin: float = 0.01) -> None:
        self.config = (int(limit), float(seconds))
        self.limit = max(1, int(limit))
        self.seconds = seconds * (1 + margin)
        self._slots: deque[list[float]] = deque()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> list[float]:
        """Block until a request may go; returns its slot, to ``release`` when answered."""
        while True:
            with self._lock:
                now = time.monotonic()
                while self._slots and now - self._slots[0][0] >= self.seconds:
                    self._slots.popleft()
                wait = self._paused_until - now
                if wait <= 0 and len(self._slots) < self.limit:
                    slot = [self.IN_FLIGHT]
                    self._slots.append(slot)
                    return slot
                if wait <= 0:
                    oldest = self._slots[0][0]
                    wait = 0.002 if oldest == self.IN_FLIGHT else self.seconds - (now - oldest)
            time.sleep(max(wait, 0.001))

    def release(self, slot: list[float]) -> None:
        with self._lock:
            slot[0] = time.monotonic()

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)


class TieredLimiter:
    """Several windows at once, e.g. Klaviyo's burst (per second) and steady (per minute) tiers."""

    def __init__(self, tiers: list[tuple[int, float]]) -> None:
        self.config = tuple(tiers)
        self.tiers = [RateLimiter(n, s) for n, s in tiers]

    def acquire(self) -> list[list[float]]:
        return [t.acquire() for t in self.tiers]

    def release(self, slots: list[list[float]]) -> None:
        for tier, slot in zip(self.tiers, slots, strict=True):
            tier.release(slot)

    def pause(self, seconds: float) -> None:
        for t in self.tiers:
            t.pause(seconds)


_LIMITERS: dict[str, RateLimiter | TieredLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def account_key(destination: str, base_url: str, credential: str | None) -> str:
    """Identifies one destination account without keeping the credential in memory as a key."""
    digest = hashlib.sha256((credential or "").encode()).hexdigest()[:16]
    return f"{destination}|{base_url.rstrip('/')}|{digest}"


def limiter_for(
    key: str, limit: tuple[int, float] | list[tuple[int, float]] | None
) -> RateLimiter | TieredLimiter | None:
    """The account's shared limiter (created on first use; a list of windows makes tiers)."""
    if limit is None:
        return None
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(key)
        if isinstance(limit, list):
            wanted: tuple = tuple((int(n), float(s)) for n, s in limit)
            if limiter is None or limiter.config != wanted:
                limiter = _LIMITERS[key] = TieredLimiter(list(wanted))
        elif limiter is None or limiter.config != (int(limit[0]), float(limit[1])):
            limiter = _LIMITERS[key] = RateLimiter(*limit)
        return limiter


def retry_after_seconds(response: requests.Response, default: float) -> float:
    value = response.headers.get("Retry-After")
    if value is None:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


class Client:
    """A session bound to one destination account; counts the calls it makes."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        limiter: RateLimiter | TieredLimiter | None = None,
        max_attempts: int = 8,
        backoff: float = 0.1,
        max_backoff: float = 8.0,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(headers or {})
        if auth:
            self.session.auth = auth
        self.limiter = limiter
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.calls = 0
        self.retries = 0
        self._count_lock = threading.Lock()  # batches may be sent from several threads

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (),
    ) -> requests.Response:
        """Send with retries; returns a 2xx response or one whose status is in ``ok``."""
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        last: HttpError | None = None
        for attempt in range(1, self.max_attempts + 1):
            slot = self.limiter.acquire() if self.limiter is not None else None
            with self._count_lock:
                self.calls += 1
            try:
                response = self.session.request(
                    method,
                    url,
                    json=json,
                    data=data,
                    params=params,
                    headers=headers,
                    timeout=self.timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                # the exception text holds the full URL: a Slack or webhook URL is itself a
                # secret, and this message reaches sync_row_results, so name the host only
                host = urlsplit(url).netloc
                response, last = None, HttpError(None, f"{type(exc).__name__} reaching {host}")
            finally:
                if slot is not None:
                    self.limiter.release(slot)
            if response is None:
                self._sleep(attempt, None)
                continue
            status = response.status_code
            if 200 <= status < 300 or status in ok:
                return response
            last = HttpError(status, error_message(response), _body(response))
            if status not in RETRYABLE:
                raise last
            log.debug("%s %s -> %s (attempt %s)", method, path, status, attempt)
            wait = None
            if status == 429:
                wait = retry_after_seconds(response, 1.0)
                if self.limiter is not None:
                    self.limiter.pause(wait)
                    wait = 0.0
            self._sleep(attempt, wait)
        assert last is not None
        raise last

    def _sleep(self, attempt: int, wait: float | None) -> None:
        with self._count_lock:
            self.retries += 1
        if wait is None:
            wait = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            wait *= 0.5 + random.random() / 2
        if wait > 0:
            time.sleep(wait)


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def error_message(response: requests.Response) -> str:
    """The vendor's own words for an error, whatever its error-body convention."""
    body = _body(response)
    if isinstance(body, dict):
        if isinstance(body.get("errors"), list) and body["errors"]:
            first = body["errors"][0]
            if isinstance(first, dict):
                return str(first.get("detail") or first.get("message") or first)
        for key in ("message", "detail", "error", "title"):
            if body.get(key):
                return str(body[key])
    text = str(body)
    return text[:500] if text else response.reason or f"HTTP {response.status_code}"
