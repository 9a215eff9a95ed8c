"""The HTTP behaviour every API source shares, written once.

- Retries with exponential backoff and full jitter on 429, 5xx, timeouts and dropped
  connections, honouring ``Retry-After`` (seconds or an HTTP date) when the server sends it.
- A client-side rate limit per source (requests per second), so a run stays under the vendor's
  documented limit instead of bouncing off it.
- Errors that help and leak nothing: 401/403/404 fail the whole source with a message naming
  the environment variables to fix; messages carry method and path, never query strings,
  headers or secret values (every known secret is masked out of any text that leaves here).
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import requests

from connectors.base import Connector, ConnectorError, NotConfigured, Page
from connectors.settings import base_url, env

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
LOOPBACK_HOSTS = ("http://127.0.0.1", "http://localhost", "http://[::1]")


class RateLimiter:
    """At most ``per_second`` request starts per second (evenly spaced), shared across threads."""

    def __init__(self, per_second: float | None) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


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


class HttpClient:
    """A ``requests`` session bound to one vendor: base URL, auth, limits, retries, messages."""

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
        self.vendor = vendor
        self.base_url = base_url.rstrip("/")
        self.credential_vars = credential_vars
        self.secrets = tuple(s for s in secrets if s)
        self.limiter = RateLimiter(rate_limit_per_s)
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        self.timeout_s = timeout_s
        self.retries = 0
        self.requests = 0
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json", **(headers or {})})
        if auth:
            self.session.auth = auth
        # proxies from the environment resolved once, not re-read on every request
        self.session.trust_env = False
        self.session.proxies = requests.utils.get_environ_proxies(self.base_url)
        self._rng = random.Random()

    def close(self) -> None:
        self.session.close()

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def _fail(
        self, message: str, *, source_wide: bool = False, status: int | None = None
    ) -> ConnectorError:
        return ConnectorError(self.mask(message), source_wide=source_wide, status=status)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_max_s) + self._rng.uniform(0, 0.1)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
        return self._rng.uniform(0, ceiling)  # full jitter: clients do not retry in lockstep

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
        attempt = 0
        while True:
            self.limiter.wait()
            self.requests += 1
            retry_after = None
            try:
                response = self.session.request(
                    method,
                    self.base_url + path,
                    params=params,
                    data=data,
                    headers=headers,
                    timeout=self.timeout_s,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = type(exc).__name__
            else:
                status = response.status_code
                if status < 400:
                    return response
                if status in (401, 403):
                    raise self._fail(
                        f"{what}: HTTP {status}, the credentials were refused; "
                        f"check {' and '.join(self.credential_vars)}",
                        source_wide=True,
                        status=status,
                    )
                if status == 404:
                    raise self._fail(
                        f"{what}: HTTP 404, no such endpoint; check {self.vendor.upper()}_BASE_URL",
                        source_wide=True,
                        status=status,
                    )
                if status not in RETRY_STATUSES:
                    raise self._fail(f"{what}: HTTP {status}: {response.text[:300]}", status=status)
                problem = f"HTTP {status}"
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt >= self.max_retries:
                raise self._fail(f"{what}: {problem}, giving up after {attempt} retries")
            delay = self._backoff(attempt, retry_after)
            attempt += 1
            self.retries += 1
            log.info("%s: %s, retry %d in %.2fs", what, problem, attempt, delay)
            time.sleep(delay)

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


def bearer_client(vendor: str, token_var: str, documented_per_s: float) -> HttpClient:
    """A client for an API authenticated by a bearer token read from ``token_var``."""
    token = env(token_var)
    if not token:
        raise NotConfigured(f"{token_var} is not set")
    base = base_url(vendor)
    return HttpClient(
        vendor,
        base,
        credential_vars=(token_var,),
        headers={"Authorization": f"Bearer {token}"},
        secrets=(token,),
        rate_limit_per_s=default_rate_limit(vendor, base, documented_per_s),
    )


class HttpConnector(Connector):
    """A source behind an HTTP API: one client, whose retries each stream's figures report."""

    def __init__(self, client: HttpClient) -> None:
        self.client = client

    @property
    def retries(self) -> int:
        return self.client.retries

    def close(self) -> None:
        self.client.close()
