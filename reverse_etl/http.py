"""HTTP for destinations: the shared transport (``connectors.http``) with the syncs' policy.

Every sync to the same account (same destination, endpoint and credential) shares one
``RateLimiter`` (``limiter_for``), so two syncs running in one process cannot together exceed the
vendor's quota. The limiter is a sliding window like the vendors' own, kept a little under the
published limit because the server timestamps arrivals later than we timestamp departures. A 429
pauses the whole account for ``Retry-After``; 5xx and connection errors are retried with
exponential backoff and jitter; other 4xx are the caller's to interpret (per-row validation, a
rejected batch), as an ``HttpError`` with the vendor's own words.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import requests

from connectors.http import (
    SYNC_RETRY,
    HttpError,
    Limiter,
    TieredLimiter,
    Transport,
    account_key,
    error_message,
    limiter_for,
)
from connectors.http import WindowLimiter as RateLimiter

RETRYABLE = SYNC_RETRY.retry_statuses

__all__ = [
    "RETRYABLE",
    "Client",
    "HttpError",
    "RateLimiter",
    "TieredLimiter",
    "account_key",
    "error_message",
    "limiter_for",
]


class Client(Transport):
    """A session bound to one destination account; counts the calls it makes."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        limiter: Limiter | None = None,
        max_attempts: int = 8,
        backoff: float = 0.1,
        max_backoff: float = 8.0,
        timeout: float = 30.0,
    ) -> None:
        policy = dataclasses.replace(
            SYNC_RETRY,
            max_retries=max(0, max_attempts - 1),
            backoff_base_s=backoff,
            backoff_max_s=max_backoff,
        )
        super().__init__(
            base_url, headers=headers, auth=auth, limiter=limiter, policy=policy, timeout_s=timeout
        )

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
        return self.send(method, path, json=json, data=data, params=params, headers=headers, ok=ok)
