"""A webhook receiver: generic signed webhooks and Slack-compatible incoming webhooks.

It records every delivery, verifies the HMAC signature of generic webhooks (``X-CDP-Signature:
t=<ts>,v1=<hex>`` over ``"<ts>.<body>"``) independently of the sender's code, answers
duplicates of a delivery id idempotently, and keeps the records a receiving system would hold
(per hook: key -> fields, removals applied) so tests can compare it with the segment.

Slack's incoming webhooks answer ``ok`` as text, ``400 invalid_payload`` or ``no_text`` for a
bad message, ``404 no_service`` for an unknown hook.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from typing import Any

from orchestration.demo.fakes.base import FakeServer, Request, Response, route

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SIGNATURE_TOLERANCE_S = 300


def reject_malformed_email(fields: dict[str, Any]) -> str | None:
    """The receiver's default row validation: a present ``email`` must look like one."""
    email = fields.get("email")
    if email is not None and not EMAIL.match(str(email)):
        return f"invalid email address: {email!r}"
    return None


class WebhookReceiver(FakeServer):
    name = "webhook"

    def __init__(
        self,
        secret: str | None = None,
        validate=reject_malformed_email,
        strict: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.strict = strict  # refuse a whole batch (422) when any row is invalid
        # the demo sets CDP_WEBHOOK_SECRET before starting the fakes; tests pass it explicitly
        self.secret = secret if secret is not None else os.environ.get("CDP_WEBHOOK_SECRET")
        self.validate = validate
        self.deliveries: list[dict[str, Any]] = []
        self.records: dict[str, dict[str, dict[str, Any]]] = {}
        self.slack_messages: list[dict[str, Any]] = []
        self.rejected_signatures = 0
        self._seen: dict[str, Any] = {}

    def check_auth(self, request: Request) -> Response | None:
        return None  # generic hooks authenticate by signature, Slack hooks by their secret URL

    def _verified(self, request: Request) -> bool:
        if self.secret is None:
            return True
        header = request.headers.get("x-cdp-signature", "")
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        try:
            timestamp = int(parts.get("t", ""))
        except ValueError:
            return False
        if abs(time.time() - timestamp) > SIGNATURE_TOLERANCE_S:
            return False
        expected = hmac.new(
            self.secret.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256
        ).hexdigest()
        return hmac.compare_digest(expected, parts.get("v1", ""))

    @route("POST", r"/hooks/(?P<hook>[^/]+)")
    def hook(self, request: Request) -> Response:
        if not self._verified(request):
            self.rejected_signatures += 1
            return Response(401, {"error": "invalid signature"})
        delivery = request.headers.get("x-cdp-delivery")
        if delivery and delivery in self._seen:
            return self._seen[delivery]
        try:
            payload = request.json()
            rows = payload["rows"]
            action = payload["action"]
        except (ValueError, KeyError, TypeError):
            return Response(400, {"error": "body must be JSON with action and rows"})
        hook = request.params["hook"]
        if self.strict and self.validate and action != "remove":
            problems = [p for r in rows if (p := self.validate(r.get("fields") or {}))]
            if problems:
                return Response(422, {"error": f"batch refused: {problems[0]}"})
        self.deliveries.append({"hook": hook, "delivery": delivery, "payload": payload})
        store = self.records.setdefault(hook, {})
        errors = []
        for row in rows:
            key = str(row.get("key"))
            if action == "remove":
                store.pop(key, None)
                continue
            fields = row.get("fields") or {}
            problem = self.validate(fields) if self.validate else None
            if problem:
                errors.append({"key": key, "message": problem})
            elif action == "update" and key not in store:
                errors.append({"key": key, "message": "no such record"})
            elif action == "insert" and key in store:
                errors.append({"key": key, "message": "record already exists"})
            else:
                store[key] = fields
        response = Response(200, {"received": len(rows), "errors": errors})
        if delivery:
            self._seen[delivery] = response
        return response

    @route("POST", r"/services/(?P<path>.+)")
    def slack(self, request: Request) -> Response:
        try:
            payload = request.json()
        except ValueError:
            return Response(400, b"invalid_payload")
        if not isinstance(payload, dict):
            return Response(400, b"invalid_payload")
        if not payload.get("text") and not payload.get("blocks"):
            return Response(400, b"no_text")
        self.slack_messages.append(payload)
        return Response(200, b"ok")
