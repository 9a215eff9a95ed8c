"""The Segment HTTP Tracking API contract: body decoding, limits, validation, enrichment.

Kept free of HTTP and file concerns so the rules (what is a valid ``track``, how large may an
event be, which fields the collector adds) are plain functions with plain tests. The limits are
Segment's: 32 KB per event, 500 KB per request, measured on the uncompressed JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
# a gzip body larger than this cannot hold a valid batch (compression never grows JSON this much)
MAX_WIRE_BYTES = 2 * MAX_BATCH_BYTES

TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})
# one compact encoder, built once: json.dumps with options builds a new one per call
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
# fields of a batch request that apply to every message in it (Segment merges them in)
BATCH_SHARED = ("context", "integrations")


class PayloadError(Exception):
    """A request the collector refuses as a whole: HTTP status, a stable code, a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"success": False, "code": self.code, "message": self.message}


@dataclass
class Rejected:
    """One message of a request that could not be accepted, with the reason a user can act on."""

    index: int
    reason: str
    raw: Any

    def summary(self) -> dict[str, Any]:
        return {"index": self.index, "reason": self.reason}


@dataclass
class Prepared:
    """What a request turned into: events ready to store and messages refused one by one."""

    events: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def decode_body(raw: bytes, content_encoding: str | None) -> bytes:
    """Gunzip if asked to, refusing anything beyond the batch limit without inflating it all."""
    if len(raw) > MAX_WIRE_BYTES:
        raise PayloadError(400, "payload_too_large", f"request body over {MAX_BATCH_BYTES} bytes")
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        body = raw
    elif encoding == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(raw, MAX_BATCH_BYTES + 1)
        except zlib.error as exc:
            raise PayloadError(400, "invalid_gzip", f"body is not valid gzip: {exc}") from None
        if len(body) > MAX_BATCH_BYTES:
            raise PayloadError(
                400, "payload_too_large", f"uncompressed body over {MAX_BATCH_BYTES} bytes"
            )
        if not inflater.eof:
            raise PayloadError(400, "invalid_gzip", "gzip body is truncated")
    else:
        raise PayloadError(400, "unsupported_encoding", f"Content-Encoding {encoding!r}")
    if len(body) > MAX_BATCH_BYTES:
        raise PayloadError(400, "payload_too_large", f"request body over {MAX_BATCH_BYTES} bytes")
    return body


def parse_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(400, "invalid_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise PayloadError(400, "invalid_json", "body must be a JSON object")
    return parsed


def encode_line(document: Any) -> bytes:
    """A document as one JSONL line, exactly as stored."""
    return _COMPACT.encode(document).encode() + b"\n"


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def problem(message: dict[str, Any]) -> str | None:
    """Why Segment would refuse this message, or ``None`` when it is valid."""
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        return "missing type"
    if kind not in TYPES:
        return f"unknown type {kind!r} (one of {', '.join(sorted(TYPES))})"
    if kind == "alias":
        if not message.get("userId") or not message.get("previousId"):
            return "alias needs userId and previousId"
    elif not message.get("userId") and not message.get("anonymousId"):
        return "userId or anonymousId is required"
    if kind == "track" and not (isinstance(message.get("event"), str) and message["event"]):
        return "track needs an event name"
    if kind == "group" and not message.get("groupId"):
        return "group needs a groupId"
    for key in ("properties", "traits", "context"):
        if key in message and message[key] is not None and not isinstance(message[key], dict):
            return f"{key} must be an object"
    return None


def enrich(
    message: dict[str, Any], shared: dict[str, Any], sent_at: Any, received_at: str
) -> dict[str, Any]:
    """The stored form: batch-level fields merged, ids and server timestamps filled in.

    ``timestamp`` is kept when the client set it; otherwise it is ``originalTimestamp``
    corrected by the client's clock skew (``receivedAt - (sentAt - originalTimestamp)``), as
    Segment computes it, or ``receivedAt``.
    """
    event = dict(message)
    event.pop("writeKey", None)  # a credential must never reach the files or the warehouse
    for key in BATCH_SHARED:
        if isinstance(shared.get(key), dict):
            event[key] = {**shared[key], **(event.get(key) or {})}
    if not event.get("messageId"):
        event["messageId"] = f"api-{uuid.uuid4()}"
    else:
        event["messageId"] = str(event["messageId"])
    if "sentAt" not in event and sent_at is not None:
        event["sentAt"] = sent_at
    event["receivedAt"] = received_at
    if not event.get("timestamp"):
        original = _parse_time(event.get("originalTimestamp"))
        sent = _parse_time(event.get("sentAt"))
        received = _parse_time(received_at)
        if original and sent and received:
            event["timestamp"] = _iso(received - (sent - original))
        elif original:
            event["timestamp"] = _iso(original)
        else:
            event["timestamp"] = received_at
    return event


def prepare(
    payload: dict[str, Any], endpoint_type: str | None, body_bytes: int | None = None
) -> Prepared:
    """Turn a request body into stored events; invalid messages are refused one by one.

    ``endpoint_type`` is the type named by the path (``/v1/track`` -> ``track``) or ``None`` for
    ``/v1/batch``; the path decides the type as in Segment's API. ``body_bytes`` (the
    uncompressed body's size) lets a body too small to hold an oversize event skip measuring.
    """
    measure = body_bytes is None or body_bytes > MAX_EVENT_BYTES
    received_at = iso_now()
    if endpoint_type is None:
        messages = payload.get("batch")
        if not isinstance(messages, list):
            raise PayloadError(400, "invalid_batch", "a batch request needs a 'batch' array")
        shared = payload
    else:
        messages = [{**payload, "type": endpoint_type}]
        shared = {}
    result = Prepared()
    sent_at = payload.get("sentAt")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            result.rejected.append(Rejected(index, "message must be a JSON object", message))
            continue
        size = len(_COMPACT.encode(message).encode()) if measure else 0
        if size > MAX_EVENT_BYTES:
            reason = f"event is {size} bytes, over the {MAX_EVENT_BYTES} byte limit"
            result.rejected.append(Rejected(index, reason, message))
            continue
        reason = problem(message)
        if reason:
            result.rejected.append(Rejected(index, reason, message))
            continue
        result.events.append(enrich(message, shared, sent_at, received_at))
    return result
