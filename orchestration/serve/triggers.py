"""Real-time triggers: YAML rules evaluated on each event the collector made durable.

A rule names the events it reacts to (type, name, property conditions), the profile its sender
must have (segment membership, trait comparisons, read from the snapshot through the identity
map by ``userId``, ``anonymousId`` or ``traits.email``), an action (a Slack message or a signed
webhook), and a per-customer rate limit so a burst of events is one alert, not a storm.

Evaluation runs on a worker thread fed after the durable write, so it never delays the 200;
deliveries run on a small pool so one slow webhook does not hold the others. Every decision that
fires or is held back by the rate limit is appended to a JSONL firing log
(``data/trigger_firings``) that the pipeline can load into ``ops.trigger_firings``; the
collector itself never opens the warehouse.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import re
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from orchestration.serve.profiles import ProfileStore, jsonable
from orchestration.serve.writer import append_locked
from reverse_etl.destinations.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, sign

log = logging.getLogger(__name__)

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "equals": lambda v, x: v == x,
    "not_equals": lambda v, x: v != x,
    "in": lambda v, x: v in x,
    "not_in": lambda v, x: v not in x,
    "contains": lambda v, x: isinstance(v, str | list) and x in v,
    "starts_with": lambda v, x: isinstance(v, str) and v.startswith(x),
    "matches": lambda v, x: isinstance(v, str) and re.search(x, v) is not None,
    "exists": lambda v, x: (v is not None) == bool(x),
    "gt": lambda v, x: _number(v) is not None and _number(v) > x,
    "gte": lambda v, x: _number(v) is not None and _number(v) >= x,
    "lt": lambda v, x: _number(v) is not None and _number(v) < x,
    "lte": lambda v, x: _number(v) is not None and _number(v) <= x,
}
# how a sender's ids map to identifier types, in the order they are tried
SENDER_IDS = (
    ("user_id", ("userId",)),
    ("anonymous_id", ("anonymousId",)),
    ("email", ("traits", "email")),
    ("email", ("context", "traits", "email")),
)
RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
_PLACEHOLDER = re.compile(r"\{([a-zA-Z_][\w.|]*)\}")


class RuleError(ValueError):
    """A rules file that cannot be used; the message names the rule and the field."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def dig(document: Any, path: str | tuple[str, ...]) -> Any:
    """``document["a"]["b"]`` for ``"a.b"``; ``None`` where any step is missing."""
    for key in path.split(".") if isinstance(path, str) else path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


@dataclass(frozen=True)
class Condition:
    """``field`` (one dotted path, or several tried in order) compared by ``op`` to ``value``."""

    fields: tuple[str, ...]
    op: str
    value: Any

    def holds(self, document: dict[str, Any]) -> bool:
        found = next((v for f in self.fields if (v := dig(document, f)) is not None), None)
        return OPERATORS[self.op](found, self.value)


def _condition(spec: Any, where: str, field_key: str = "field") -> Condition:
    if not isinstance(spec, dict) or field_key not in spec:
        raise RuleError(f"{where}: a condition needs '{field_key}' and one operator")
    ops = [k for k in spec if k in OPERATORS]
    extra = set(spec) - {field_key, *OPERATORS}
    if len(ops) != 1 or extra:
        raise RuleError(
            f"{where}: exactly one operator of {', '.join(OPERATORS)} (got {sorted(spec)})"
        )
    fields = spec[field_key]
    fields = tuple(fields) if isinstance(fields, list) else (str(fields),)
    value = spec[ops[0]]
    if ops[0] in ("gt", "gte", "lt", "lte") and _number(value) is None:
        raise RuleError(f"{where}: {ops[0]} needs a number, not {value!r}")
    if ops[0] in ("in", "not_in") and not isinstance(value, list):
        raise RuleError(f"{where}: {ops[0]} needs a list")
    if ops[0] == "matches":
        re.compile(value)
    return Condition(
        fields, ops[0], _number(value) if ops[0] in ("gt", "gte", "lt", "lte") else value
    )


@dataclass(frozen=True)
class ProfileTest:
    """One profile condition: in a segment, not in a segment, or a trait comparison."""

    segment: str | None = None
    not_segment: str | None = None
    trait: Condition | None = None

    def holds(self, segments: set[str], row: dict[str, Any]) -> bool:
        if self.segment is not None:
            return self.segment in segments
        if self.not_segment is not None:
            return self.not_segment not in segments
        return self.trait is not None and self.trait.holds(row)


@dataclass(frozen=True)
class Rule:
    name: str
    types: frozenset[str]
    names: frozenset[str]
    where: tuple[Condition, ...]
    profile_all: tuple[ProfileTest, ...]
    profile_any: tuple[ProfileTest, ...]
    action: dict[str, Any]
    rate_max: int | None
    rate_seconds: float
    description: str = ""

    @property
    def needs_profile(self) -> bool:
        return bool(self.profile_all or self.profile_any)

    def matches_event(self, event: dict[str, Any]) -> bool:
        if self.types and event.get("type") not in self.types:
            return False
        if self.names and (event.get("event") or event.get("name")) not in self.names:
            return False
        return all(c.holds(event) for c in self.where)

    def matches_profile(self, segments: set[str], row: dict[str, Any] | None) -> bool:
        if not self.needs_profile:
            return True
        if row is None:
            return False
        if not all(t.holds(segments, row) for t in self.profile_all):
            return False
        return not self.profile_any or any(t.holds(segments, row) for t in self.profile_any)


def _as_set(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    return frozenset(value if isinstance(value, list) else [value])


def _profile_tests(items: Any, where: str) -> tuple[ProfileTest, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise RuleError(f"{where}: a list of conditions")
    tests = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        if isinstance(item, dict) and set(item) == {"segment"}:
            tests.append(ProfileTest(segment=str(item["segment"])))
        elif isinstance(item, dict) and set(item) == {"not_segment"}:
            tests.append(ProfileTest(not_segment=str(item["not_segment"])))
        elif isinstance(item, dict) and "trait" in item:
            tests.append(ProfileTest(trait=_condition(item, at, field_key="trait")))
        else:
            raise RuleError(f"{at}: one of segment, not_segment or trait + operator")
    return tuple(tests)


def parse_rule(spec: Any, index: int) -> Rule:
    if not isinstance(spec, dict) or not spec.get("name"):
        raise RuleError(f"rules[{index}]: every rule needs a name")
    name = str(spec["name"])
    event = spec.get("event") or {}
    profile = spec.get("profile") or {}
    action = spec.get("action") or {}
    if set(action) - {"slack", "webhook"} or len(action) != 1:
        raise RuleError(f"rule {name}: action is one of slack or webhook")
    kind, options = next(iter(action.items()))
    options = dict(options or {})
    if kind == "slack" and not options.get("text"):
        raise RuleError(f"rule {name}: a slack action needs text")
    if kind == "webhook" and not (options.get("url") or options.get("url_env")):
        raise RuleError(f"rule {name}: a webhook action needs url or url_env")
    rate = spec.get("rate_limit") or {}
    where = event.get("where") or []
    if not isinstance(where, list):
        raise RuleError(f"rule {name}: event.where is a list of conditions")
    return Rule(
        name=name,
        description=str(spec.get("description") or ""),
        types=_as_set(event.get("type")),
        names=_as_set(event.get("name")),
        where=tuple(_condition(c, f"rule {name}: event.where[{i}]") for i, c in enumerate(where)),
        profile_all=_profile_tests(profile.get("all"), f"rule {name}: profile.all"),
        profile_any=_profile_tests(profile.get("any"), f"rule {name}: profile.any"),
        action={"kind": kind, **options},
        rate_max=int(rate["max"]) if "max" in rate else None,
        rate_seconds=float(rate.get("per_seconds", 3600)),
    )


def load_rules(path: str | Path) -> list[Rule]:
    """The rules of a YAML file (``rules: [...]``); a missing file means no rules."""
    path = Path(path)
    if not path.exists():
        log.warning("no trigger rules file at %s: triggers are off", path)
        return []
    document = yaml.safe_load(path.read_text()) or {}
    specs = document.get("rules") or []
    rules = [parse_rule(spec, i) for i, spec in enumerate(specs)]
    names = [r.name for r in rules]
    if len(names) != len(set(names)):
        raise RuleError(f"{path}: rule names must be unique")
    return rules


def render(template: str, context: dict[str, Any]) -> str:
    """Fill ``{a.b}`` (or ``{a.b|c.d}``, first non-empty) from ``context``; missing -> empty."""

    def value(match: re.Match) -> str:
        for path in match.group(1).split("|"):
            found = dig(context, path)
            if found not in (None, ""):
                return str(found)
        return ""

    return _PLACEHOLDER.sub(value, template)


@dataclass
class Firing:
    """One rule decision for one event, as recorded in the firing log."""

    rule: str
    customer_id: Any
    message_id: str
    event_type: str | None
    event_name: str | None
    action: str
    status: str  # delivered | failed | rate_limited | skipped
    received_at: str | None
    decided_at: str
    firing_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    delivered_at: str | None = None
    latency_ms: float | None = None
    http_status: int | None = None
    error: str | None = None


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FiringLog:
    """Append-only JSONL of firings, one file a day, fsynced: the audit the pipeline loads."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()

    def append(self, firing: Firing) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        line = json.dumps(jsonable(firing.__dict__), separators=(",", ":")) + "\n"
        day = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
        with self._lock:  # the flock in append_locked keeps a privacy rewrite out
            append_locked(self.folder / f"firings-{day}.jsonl", line.encode())

    def read(self, since_s: float | None = None) -> list[dict[str, Any]]:
        """Firings of files touched in the last ``since_s`` seconds (all when ``None``)."""
        horizon = time.time() - since_s if since_s is not None else 0
        rows = []
        for path in sorted(self.folder.glob("firings-*.jsonl")):
            if path.stat().st_mtime < horizon:
                continue
            with path.open() as f:
                rows.extend(json.loads(line) for line in f if line.strip())
        return rows


class RateLimiter:
    """At most ``rule.rate_max`` firings per customer in any ``rule.rate_seconds`` window."""

    def __init__(self) -> None:
        self._fired: dict[tuple[str, str], deque[float]] = defaultdict(deque)

    def admit(self, rule: Rule, key: str, now: float | None = None) -> bool:
        if rule.rate_max is None:
            return True
        now = time.time() if now is None else now
        window = self._fired[(rule.name, key)]
        while window and now - window[0] >= rule.rate_seconds:
            window.popleft()
        if len(window) >= rule.rate_max:
            return False
        window.append(now)
        return True

    def seed(self, rules: list[Rule], firings: list[dict[str, Any]]) -> None:
        """Count firings a previous process made, so a restart does not reopen the floodgates."""
        by_name = {r.name: r for r in rules}
        for f in firings:
            rule = by_name.get(f.get("rule"))
            if rule is None or f.get("status") not in ("delivered", "failed"):
                continue
            try:
                at = dt.datetime.fromisoformat(f["decided_at"].replace("Z", "+00:00")).timestamp()
            except (KeyError, ValueError, AttributeError):
                continue
            if time.time() - at < rule.rate_seconds:
                self._fired[(rule.name, str(f.get("customer_id")))].append(at)
        for window in self._fired.values():
            ordered = sorted(window)
            window.clear()
            window.extend(ordered)


class TriggerEngine:
    """Evaluates rules on accepted events off the request path and delivers the actions."""

    def __init__(
        self,
        rules: list[Rule],
        store_provider: Callable[[], ProfileStore | None],
        firings: FiringLog,
        *,
        slack_url: str | None = None,
        webhook_secret: str | None = None,
        env: Callable[[str], str | None] = os.environ.get,
        max_workers: int = 4,
        timeout_s: float = 5.0,
        attempts: int = 3,
    ) -> None:
        self.rules = rules
        self.store_provider = store_provider
        self.firings = firings
        self.slack_url = slack_url
        self.webhook_secret = webhook_secret
        self.env = env
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.limiter = RateLimiter()
        self._queue: queue.Queue[tuple[list[dict[str, Any]], float] | None] = queue.Queue()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="trigger")
        self._session = requests.Session()
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> TriggerEngine:
        slack_rules = [r.name for r in self.rules if r.action["kind"] == "slack"]
        if slack_rules and not self.slack_url:
            log.warning(
                "SLACK_WEBHOOK_URL is not set: rules %s are evaluated and recorded as skipped",
                ", ".join(slack_rules),
            )
        horizon = max((r.rate_seconds for r in self.rules if r.rate_max), default=0)
        if horizon:
            self.limiter.seed(self.rules, self.firings.read(since_s=horizon + 86400))
        self._thread = threading.Thread(target=self._run, name="triggers", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        self._pool.shutdown(wait=True)
        self._session.close()

    def submit(self, events: list[dict[str, Any]], received: float | None = None) -> None:
        """Hand over events that are durable; returns at once."""
        if not self.rules or not events:
            return
        with self._idle:
            self._pending += 1
        self._queue.put((events, received if received is not None else time.monotonic()))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every submitted event is evaluated and every delivery finished."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            if not self._pending:
                self._idle.notify_all()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            events, received = item
            try:
                for event in events:
                    self.evaluate(event, received)
            except Exception:  # one bad rule or event must not stop the triggers
                log.exception("trigger evaluation failed")
            finally:
                self._done()

    # -- evaluation ------------------------------------------------------------------------
    def sender(self, store: ProfileStore | None, event: dict[str, Any]) -> Any | None:
        """The customer who sent ``event``, through the identity map of the snapshot."""
        if store is None:
            return None
        for id_type, path in SENDER_IDS:
            value = dig(event, path)
            if value not in (None, ""):
                cid = store.owner(id_type, value)
                if cid is not None:
                    return cid
        return None

    def evaluate(self, event: dict[str, Any], received: float) -> list[Firing]:
        candidates = [r for r in self.rules if r.matches_event(event)]
        if not candidates:
            return []
        store = self.store_provider()
        cid = self.sender(store, event)
        row = store.customer(cid) if store is not None and cid is not None else None
        segments = store.segment_names(cid) if row is not None else set()
        fired = []
        for rule in candidates:
            if not rule.matches_profile(segments, row):
                continue
            key = str(cid if cid is not None else event.get("userId") or event.get("anonymousId"))
            firing = Firing(
                rule=rule.name,
                customer_id=cid,
                message_id=event.get("messageId", ""),
                event_type=event.get("type"),
                event_name=event.get("event") or event.get("name"),
                action=rule.action["kind"],
                status="pending",
                received_at=event.get("receivedAt"),
                decided_at=_now_iso(),
            )
            if not self.limiter.admit(rule, key):
                firing.status = "rate_limited"
                self.firings.append(firing)
                continue
            context = {
                "rule": {"name": rule.name, "description": rule.description},
                "event": event,
                "customer_id": cid,
                "profile": store.profile(cid) if store is not None and row is not None else {},
            }
            with self._idle:
                self._pending += 1
            self._pool.submit(self._deliver, rule, firing, context, received)
            fired.append(firing)
        return fired

    # -- delivery --------------------------------------------------------------------------
    def _deliver(
        self, rule: Rule, firing: Firing, context: dict[str, Any], received: float
    ) -> None:
        try:
            url, body, headers = self._request(rule, firing, context)
            if url is None:
                firing.status = "skipped"
                firing.error = body.decode()
                log.warning("trigger %s: %s", rule.name, firing.error)
            else:
                firing.http_status, firing.error = self._post(url, body, headers)
                firing.status = "delivered" if firing.error is None else "failed"
                firing.delivered_at = _now_iso()
                firing.latency_ms = round((time.monotonic() - received) * 1000, 1)
            self.firings.append(firing)
        except Exception:
            log.exception("trigger %s: delivery crashed", rule.name)
        finally:
            self._done()

    def _request(
        self, rule: Rule, firing: Firing, context: dict[str, Any]
    ) -> tuple[str | None, bytes, dict[str, str]]:
        action = rule.action
        if action["kind"] == "slack":
            url = action.get("url") or self.slack_url
            if action.get("url_env"):
                url = self.env(action["url_env"])
            if not url:
                return None, b"SLACK_WEBHOOK_URL is not set: message not sent", {}
            body = json.dumps({"text": render(action["text"], context)}).encode()
            return url, body, {"Content-Type": "application/json"}
        url = action.get("url") or (self.env(action["url_env"]) if action.get("url_env") else None)
        if not url:
            return None, f"{action.get('url_env')} is not set: webhook not sent".encode(), {}
        payload = {
            "rule": rule.name,
            "firing_id": firing.firing_id,
            "customer_id": context["customer_id"],
            "event": context["event"],
            "profile": context["profile"],
        }
        body = json.dumps(jsonable(payload), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: firing.firing_id}
        if self.webhook_secret:
            headers[SIGNATURE_HEADER] = sign(self.webhook_secret, int(time.time()), body)
        return url, body, headers

    def _post(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int | None, str | None]:
        """POST with retries on 429/5xx/connection errors; the error never contains the URL."""
        status, error = None, None
        for attempt in range(self.attempts):
            try:
                response = self._session.post(
                    url, data=body, headers=headers, timeout=self.timeout_s
                )
            except requests.RequestException as exc:
                status, error = None, f"connection failed: {type(exc).__name__}"
            else:
                status = response.status_code
                if status < 300:
                    return status, None
                error = f"HTTP {status}: {response.text[:200]}"
                if status not in RETRY_STATUSES:
                    return status, error
            if attempt + 1 < self.attempts:
                time.sleep(min(2.0, 0.2 * 2**attempt))
        return status, error
