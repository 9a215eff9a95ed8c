"""Generic signed webhooks and Slack incoming webhooks.

A generic webhook receives one JSON POST per batch (or per row, ``options.per: row``) signed with
HMAC-SHA256 over ``"<timestamp>.<body>"`` in ``X-CDP-Signature: t=<timestamp>,v1=<hex>``, the
scheme Stripe and Slack use, so receivers can reject forgeries and replays. ``X-CDP-Delivery``
is stable across retries of one batch so receivers can deduplicate. A receiver may answer 2xx
with ``{"errors": [{"key", "message"}]}`` to refuse single rows, or 400/422 to refuse the batch.

Slack gets one readable message per batch; it has no per-row errors and allows about one
message per second per webhook.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any, ClassVar

from reverse_etl import settings
from reverse_etl.config import SyncConfig
from reverse_etl.destinations.base import (
    BatchRejected,
    HttpDestination,
    MissingCredentials,
    Outcome,
    Row,
    all_ok,
    jsonable,
    register,
)
from reverse_etl.http import HttpError

SIGNATURE_HEADER = "X-CDP-Signature"
DELIVERY_HEADER = "X-CDP-Delivery"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def _payload(sync: SyncConfig, action: str, rows: list[Row]) -> dict[str, Any]:
    return {
        "sync": sync.name,
        "action": action,
        "rows": [
            {"key": r.key}
            if action == "remove"
            else {"key": r.key, "fields": {k: jsonable(v) for k, v in r.fields.items()}}
            for r in rows
        ],
    }


@register
class WebhookDestination(HttpDestination):
    kind: ClassVar[str] = "webhook"
    max_batch_size: ClassVar[int] = 500
    modes: ClassVar[frozenset[str]] = frozenset({"upsert", "update", "insert", "mirror"})

    def __init__(self, sync: SyncConfig, client, url: str, secret: str) -> None:
        super().__init__(sync, client)
        self.url = url
        self.secret = secret

    @classmethod
    def from_config(cls, sync: SyncConfig) -> WebhookDestination:
        url_env = sync.options.get("url_env", "CDP_WEBHOOK_URL")
        secret_env = sync.options.get("secret_env", "CDP_WEBHOOK_SECRET")
        url, secret = settings.env(url_env), settings.env(secret_env)
        if not url or not secret:
            raise MissingCredentials(f"set {url_env} and {secret_env} to send webhooks")
        dest = cls(sync, cls.make_client(sync, url, secret), url, secret)
        dest.check_mode()
        return dest

    @classmethod
    def estimate_calls(cls, action: str, rows: int, sync: SyncConfig) -> int:
        if sync.options.get("per") == "row":
            return rows
        return super().estimate_calls(action, rows, sync)

    def write(self, action: str, rows: list[Row]) -> list[Outcome]:
        if self.sync.options.get("per") == "row":
            return [o for r in rows for o in self._post(action, [r])]
        return self._post(action, rows)

    def _post(self, action: str, rows: list[Row]) -> list[Outcome]:
        body = json.dumps({**_payload(self.sync, action, rows), "sent_at": time.time()}).encode()
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: uuid.uuid4().hex}
        # retries resend the same signed body and delivery id, so receivers can deduplicate
        headers[SIGNATURE_HEADER] = sign(self.secret, int(time.time()), body)
        try:
            response = self.client.request("POST", self.url, data=body, headers=headers)
        except HttpError as exc:
            if exc.status in (400, 413, 422):
                raise BatchRejected(exc.message) from exc
            raise
        try:
            answer = response.json()
        except ValueError:
            answer = None
        errors = {}
        if isinstance(answer, dict):
            errors = {str(e.get("key")): str(e.get("message")) for e in answer.get("errors") or []}
        return [
            Outcome(r.key, False, errors[r.key]) if r.key in errors else Outcome(r.key, True)
            for r in rows
        ]


@register
class SlackDestination(HttpDestination):
    kind: ClassVar[str] = "slack"
    max_batch_size: ClassVar[int] = 20
    max_concurrency: ClassVar[int] = 1  # messages keep their order
    modes: ClassVar[frozenset[str]] = frozenset({"upsert", "insert", "mirror"})
    default_rate_limit: ClassVar[tuple[int, float] | None] = (1, 1.0)

    def __init__(self, sync: SyncConfig, client, url: str) -> None:
        super().__init__(sync, client)
        self.url = url

    @classmethod
    def from_config(cls, sync: SyncConfig) -> SlackDestination:
        url_env = sync.options.get("url_env", "SLACK_WEBHOOK_URL")
        url = settings.env(url_env)
        if not url:
            raise MissingCredentials(f"set {url_env} to post to Slack")
        dest = cls(sync, cls.make_client(sync, url, url), url)
        dest.check_mode()
        return dest

    def write(self, action: str, rows: list[Row]) -> list[Outcome]:
        verb = {"remove": "left", "insert": "entered"}.get(action, "entered or changed")
        title = self.sync.options.get("title") or self.sync.name
        lines = [f"*{title}*: {len(rows)} {verb}"]
        for r in rows:
            shown = ", ".join(f"{k}={jsonable(v)}" for k, v in r.fields.items() if v is not None)
            lines.append(f"• {r.key}" + (f" ({shown})" if shown and action != "remove" else ""))
        try:
            self.client.request("POST", self.url, json={"text": "\n".join(lines)})
        except HttpError as exc:
            if exc.status == 400:  # invalid_payload / no_text: the message, not the transport
                raise BatchRejected(exc.message) from exc
            raise
        return all_ok(rows)
