"""The HTTP transport every API caller shares, written once: sources, syncs, deletions.

- Retries with exponential backoff and jitter on 429, 5xx, timeouts and dropped connections,
  honouring ``Retry-After`` (seconds or an HTTP date) when the server sends it.
- Rate limits: a paced limit per source (``RateLimiter``, requests per second), and for syncs a
  sliding window shared by every client of one destination account (``WindowLimiter``,
  ``TieredLimiter``, ``limiter_for``), thread-safe, which a 429 pauses for the whole account.
- Errors that help and leak nothing: messages carry method and path or host, never query
  strings, headers or secret values (every known secret is masked out of any text that leaves
  here). A source's 401/403/404 fail the whole source with a message naming the environment
  variables to fix (``HttpClient``); a sync gets the vendor's own words (``HttpError``).

``Transport`` is the one retry loop; ``RetryPolicy`` holds what differs between callers (how
many retries, which statuses, which jitter), so their behaviour stays what each was tuned for.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
import requests

from connectors.base import Connector, ConnectorError, NotConfigured, Page
from connectors.settings import base_url, env

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
LOOPBACK_HOSTS = ("http://127.0.0.1", "http://localhost", "http://[::1]")
_NOT_ERRORS = tuple(range(300, 400))  # a source takes any answer under 400 (e.g. 304)


# -- rate limits -------------------------------------------------------------------------------


class Limiter(Protocol):
    """What the transport needs of a rate limit: a slot per request, and a pause after a 429."""

    def acquire(self) -> Any: ...

    def release(self, slot: Any) -> None: ...

    def pause(self, seconds: float) -> None: ...


class _Pausable:
    def __init__(self) -> None:
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)


class RateLimiter(_Pausable):
    """At most ``per_second`` request starts per second (evenly spaced), shared across threads."""

    def __init__(self, per_second: float | None) -> None:
        super().__init__()
        self.interval = 1.0 / per_second if per_second else 0.0
        self._next = 0.0

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next, self._paused_until)
            if self.interval:
                self._next = start + self.interval
        if start > now:
            time.sleep(start - now)

    def acquire(self) -> None:
        self.wait()

    def release(self, slot: Any) -> None:
        return None


class WindowLimiter(_Pausable):
    """At most ``limit`` requests in any ``seconds`` window, shared by threads; honours pauses.

    A request occupies its slot from the moment it is sent until its answer came back, and the
    window is counted from that answer: the server saw the request at some moment in between,
    so ``limit`` answers more than ``seconds`` old guarantee the server's own sliding window has
    room, whatever the latency (timestamps taken at send time let jittery requests bunch up).
    """

    IN_FLIGHT = float("inf")

    def __init__(self, limit: int, seconds: float, margin: float = 0.01) -> None:
        super().__init__()
        self.config = (int(limit), float(seconds))
        self.limit = max(1, int(limit))
        self.seconds = seconds * (1 + margin)
        self._slots: deque[list[float]] = deque()

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


class TieredLimiter:
    """Several windows at once, e.g. Klaviyo's burst (per second) and steady (per minute) tiers."""

    def __init__(self, tiers: list[tuple[int, float]]) -> None:
        self.config = tuple(tiers)
        self.tiers = [WindowLimiter(n, s) for n, s in tiers]

    def acquire(self) -> list[list[float]]:
        return [t.acquire() for t in self.tiers]

    def release(self, slots: list[list[float]]) -> None:
        for tier, slot in zip(self.tiers, slots, strict=True):
            tier.release(slot)

    def pause(self, seconds: float) -> None:
        for t in self.tiers:
            t.pause(seconds)


_LIMITERS: dict[str, WindowLimiter | TieredLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def account_key(destination: str, base_url: str, credential: str | None) -> str:
    """Identifies one destination account without keeping the credential in memory as a key."""
    digest = hashlib.sha256((credential or "").encode()).hexdigest()[:16]
    return f"{destination}|{base_url.rstrip('/')}|{digest}"


def limiter_for(
    key: str, limit: tuple[int, float] | list[tuple[int, float]] | None
) -> WindowLimiter | TieredLimiter | None:
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
            limiter = _LIMITERS[key] = WindowLimiter(*limit)
        return limiter


# -- errors ----------------------------------------------------------------------------------


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def response_body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def error_message(response: requests.Response) -> str:
    """The vendor's own words for an error, whatever its error-body convention."""
    body = response_body(response)
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


class HttpError(Exception):
    """A response the transport will not retry, or the last one when retries ran out.

    ``status`` is None for a connection failure; ``problem`` names what went wrong in a few
    words (``HTTP 503``, ``ConnectionError``); ``retries`` is set when retries were exhausted.
    """

    def __init__(
        self,
        status: int | None,
        message: str,
        body: Any = None,
        *,
        text: str = "",
        problem: str = "",
        retries: int | None = None,
    ) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.body = body
        self.text = text
        self.problem = problem or (f"HTTP {status}" if status else message)
        self.retries = retries

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in SYNC_RETRY.retry_statuses


# -- the transport ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How a caller retries: the part that differs between ingest and syncs."""

    max_retries: int = 8
    backoff_base_s: float = 0.25
    backoff_max_s: float = 30.0
    # "full": uniform(0, ceiling), clients spread out; "equal": half the ceiling at least
    jitter: str = "full"
    retry_statuses: frozenset[int] = RETRY_STATUSES
    retry_after_default_s: float | None = None  # a 429 without Retry-After: wait this long
    retry_after_max_s: float = 120.0
    retry_after_jitter_s: float = 0.1

    def backoff(self, retry: int, rng: random.Random) -> float:
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2**retry)
        if self.jitter == "equal":
            return ceiling * (0.5 + rng.random() / 2)
        return rng.uniform(0, ceiling)


INGEST_RETRY = RetryPolicy()
SYNC_RETRY = RetryPolicy(
    max_retries=7,
    backoff_base_s=0.1,
    backoff_max_s=8.0,
    jitter="equal",
    retry_statuses=frozenset({408, 425, 429, 500, 502, 503, 504}),
    retry_after_default_s=1.0,
    retry_after_max_s=math.inf,
    retry_after_jitter_s=0.0,
)


class Transport:
    """A ``requests`` session to one base URL: limits, retries, ``Retry-After``, masked errors.

    Thread-safe: syncs send batches from several threads through one transport.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        limiter: Limiter | None = None,
        policy: RetryPolicy = INGEST_RETRY,
        secrets: tuple[str, ...] = (),
        timeout_s: float = 30.0,
        trust_env: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.policy = policy
        self.secrets = tuple(s for s in secrets if s)
        self.timeout_s = timeout_s
        self.calls = 0
        self.retries = 0
        self.session = requests.Session()
        self.session.headers.update(headers or {})
        if auth:
            self.session.auth = auth
        if not trust_env:
            # proxies from the environment resolved once, not re-read on every request
            self.session.trust_env = False
            self.session.proxies = requests.utils.get_environ_proxies(self.base_url)
        self._count_lock = threading.Lock()
        self._rng = random.Random()

    def close(self) -> None:
        self.session.close()

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (),
    ) -> requests.Response:
        """Send with retries; a 2xx response (or a status in ``ok``), else ``HttpError``."""
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        policy = self.policy
        retry = 0
        while True:
            slot = self.limiter.acquire() if self.limiter is not None else None
            with self._count_lock:
                self.calls += 1
            wait: float | None = None
            try:
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    data=data,
                    headers=headers,
                    timeout=self.timeout_s,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                # the exception text holds the full URL: a Slack or webhook URL is itself a
                # secret, and messages reach the warehouse, so name the host only
                problem = type(exc).__name__
                error = HttpError(None, f"{problem} reaching {urlsplit(url).netloc}")
                error.problem = problem
            else:
                status = response.status_code
                if status < 300 or status in ok:
                    return response
                text = self.mask(response.text)
                error = HttpError(
                    status,
                    self.mask(error_message(response)),
                    response_body(response),
                    text=text,
                )
                if status not in policy.retry_statuses:
                    raise error
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                if wait is None and status == 429:
                    wait = policy.retry_after_default_s
            finally:
                if self.limiter is not None:
                    self.limiter.release(slot)
            if retry >= policy.max_retries:
                error.retries = retry
                raise error
            paused = wait is not None and self.limiter is not None
            if wait is not None:
                wait = min(wait, policy.retry_after_max_s)
                wait += self._rng.uniform(0, policy.retry_after_jitter_s)
            else:
                wait = policy.backoff(retry, self._rng)
            retry += 1
            with self._count_lock:
                self.retries += 1
            log.info("%s %s: %s, retry %d in %.2fs", method, path, error.problem, retry, wait)
            if paused:
                self.limiter.pause(wait)  # the whole account waits, not just this thread
            elif wait > 0:
                time.sleep(wait)


class HttpClient(Transport):
    """A transport bound to one source's vendor: its errors become ``ConnectorError``s."""

    def __init__(
        self,
        vendor: str,
        base_url: str,
        *,
        credential_vars: tuple[str, ...],
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        secrets: tuple[str, ...] = (),
        rate_limit_per_s: float | None = None,
        max_retries: int = 8,
        backoff_base_s: float = 0.25,
        backoff_max_s: float = 30.0,
        retry_after_max_s: float = 120.0,
        timeout_s: float = 30.0,
    ) -> None:
        super().__init__(
            base_url,
            headers={"Accept": "application/json", **(headers or {})},
            auth=auth,
            limiter=RateLimiter(rate_limit_per_s),
            policy=RetryPolicy(
                max_retries=max_retries,
                backoff_base_s=backoff_base_s,
                backoff_max_s=backoff_max_s,
                retry_after_max_s=retry_after_max_s,
            ),
            secrets=secrets,
            timeout_s=timeout_s,
            trust_env=False,
        )
        self.vendor = vendor
        self.credential_vars = credential_vars

    @property
    def requests(self) -> int:
        return self.calls

    def _fail(
        self, message: str, *, source_wide: bool = False, status: int | None = None
    ) -> ConnectorError:
        return ConnectorError(self.mask(message), source_wide=source_wide, status=status)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | list[tuple[str, Any]] | None = None,
        json_body: Any = None,
    ) -> requests.Response:
        """Send with retries; return the 2xx response or raise a secret-free ``ConnectorError``."""
        what = f"{self.vendor} {method} {path}"
        data = orjson.dumps(json_body) if json_body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            return self.send(
                method, path, params=params, data=data, headers=headers, ok=_NOT_ERRORS
            )
        except HttpError as exc:
            status = exc.status
            if exc.retries is not None:
                raise self._fail(
                    f"{what}: {exc.problem}, giving up after {exc.retries} retries"
                ) from None
            if status in (401, 403):
                raise self._fail(
                    f"{what}: HTTP {status}, the credentials were refused; "
                    f"check {' and '.join(self.credential_vars)}",
                    source_wide=True,
                    status=status,
                ) from None
            if status == 404:
                raise self._fail(
                    f"{what}: HTTP 404, no such endpoint; check {self.vendor.upper()}_BASE_URL",
                    source_wide=True,
                    status=status,
                ) from None
            raise self._fail(f"{what}: HTTP {status}: {exc.text[:300]}", status=status) from None

    def get_json(self, path: str, params: Any = None) -> Any:
        return self.parse(self.request("GET", path, params=params), path)

    def post_json(self, path: str, body: Any) -> Any:
        return self.parse(self.request("POST", path, json_body=body), path)

    def parse(self, response: requests.Response, path: str) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise self._fail(f"{self.vendor} {path}: the response is not JSON") from None


def follow(
    fetch: Callable[[Any], Any], next_token: Callable[[Any], Any], token: Any = None
) -> Iterator[Any]:
    """Pages of a cursor-paginated endpoint: ``fetch(token)`` until ``next_token(page)`` is None."""
    while True:
        page = fetch(token)
        yield page
        token = next_token(page)
        if token is None:
            return


def json_page(records: list[Any], state: dict[str, Any] | None) -> Page:
    """A page of API records as compact JSON text, as ``_record`` keeps them.

    When every record is a JSON object (they were parsed, so they are valid), the page says so
    and the loader skips re-validating each text: two JSON parses per record fewer.
    """
    dumps = orjson.dumps
    texts = [dumps(r).decode() for r in records]
    return Page(texts, state, objects=all(isinstance(r, dict) for r in records))


def default_rate_limit(vendor: str, base_url: str, documented_per_s: float) -> float | None:
    """The client-side limit: ``<VENDOR>_RATE_LIMIT_PER_S``, else the vendor's documented limit.

    A loopback base URL (a local fake or proxy) gets no client-side limit unless one is set:
    the fake enforces its own with 429s, and the demo should not wait on a vendor's quota.
    """
    configured = env(f"{vendor.upper()}_RATE_LIMIT_PER_S")
    if configured is not None:
        return float(configured) or None
    if base_url.startswith(LOOPBACK_HOSTS):
        return None
    return documented_per_s


def keyed_client(
    vendor: str,
    key_var: str,
    documented_per_s: float,
    *,
    headers: Callable[[str], dict[str, str]] | None = None,
    basic_auth_user: str | None = None,
    base_for_key: Callable[[str], str] | None = None,
) -> HttpClient:
    """A client for an API authenticated by one key read from ``key_var``: sent as a bearer token,
    unless ``headers`` (built from the key) or HTTP basic auth as ``basic_auth_user`` say otherwise.
    The base URL is ``<VENDOR>_BASE_URL``, the vendor's default, or one derived from the key."""
    key = env(key_var)
    if not key:
        raise NotConfigured(f"{key_var} is not set")
    base = base_url(vendor) or (base_for_key(key).rstrip("/") if base_for_key else None)
    if headers is not None:
        sent = headers(key)
    elif basic_auth_user is None:
        sent = {"Authorization": f"Bearer {key}"}
    else:
        sent = None
    return HttpClient(
        vendor,
        base,
        credential_vars=(key_var,),
        headers=sent,
        auth=(basic_auth_user, key) if basic_auth_user is not None else None,
        secrets=(key,),
        rate_limit_per_s=default_rate_limit(vendor, base, documented_per_s),
    )


def bearer_client(vendor: str, token_var: str, documented_per_s: float) -> HttpClient:
    """A client for an API authenticated by a bearer token read from ``token_var``."""
    return keyed_client(vendor, token_var, documented_per_s)


class HttpConnector(Connector):
    """A source behind an HTTP API: one client, whose retries each stream's figures report."""

    def __init__(self, client: HttpClient) -> None:
        self.client = client

    @property
    def retries(self) -> int:
        return self.client.retries

    def close(self) -> None:
        self.client.close()
