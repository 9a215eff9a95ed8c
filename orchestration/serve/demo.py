"""The real-time part of ``cdp demo``: pricing-page visits through the collector, to Slack.

After the demo's build, this exports the profile snapshot, starts the collector on a free local
port, and has the official Segment client report a ``/pricing`` page view by one high-value
customer and one other customer. The shipped rule must alert Slack about the first only; the
result says what fired, so the demo can print it and tests can assert it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from orchestration.serve import config
from orchestration.serve.app import ServerThread, create_app
from orchestration.serve.profiles import ProfileStore
from orchestration.serve.snapshot import refresh

log = logging.getLogger(__name__)

HIGH_VALUE_SEGMENT = "high_value_customers"
SENDER_TYPES = ("user_id", "anonymous_id")


@dataclass
class PricingDemo:
    high_value: dict[str, Any]
    other: dict[str, Any]
    fired_for: list[Any] = field(default_factory=list)
    firings: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.fired_for == [self.high_value["customer_id"]]

    def describe(self) -> str:
        lines = [
            f"real-time trigger: /pricing visits by {self.high_value['customer_id']} "
            f"(high value) and {self.other['customer_id']} (not)",
            f"  fired for {self.fired_for or 'nobody'}"
            + (f" in {self.latency_ms[0]:.0f} ms" if self.latency_ms else ""),
        ]
        return "\n".join(lines)


def _sender(store: ProfileStore, cid: Any) -> dict[str, Any] | None:
    """How the customer's browser would identify itself: a user id or an anonymous id."""
    ids = {}
    for row in store.identifiers_of(cid):
        ids.setdefault(row["id_type"], row["id_value"])
    for id_type in SENDER_TYPES:
        if id_type in ids:
            return {"customer_id": cid, "id_type": id_type, "id_value": ids[id_type]}
    return None


def pick_customers(store: ProfileStore) -> tuple[dict[str, Any], dict[str, Any]]:
    """A high-value customer and one outside the segment, each with a user or anonymous id."""
    members = set(
        store.memberships.filter(store.memberships["segment"] == HIGH_VALUE_SEGMENT)[
            "customer_id"
        ].to_list()
    )
    high = other = None
    for cid in store.customers["customer_id"].to_list():
        if (high if cid in members else other) is not None:
            continue
        found = _sender(store, cid)
        if found is None:
            continue
        if cid in members:
            high = found
        else:
            other = found
        if high and other:
            return high, other
    raise RuntimeError(f"the warehouse has no {HIGH_VALUE_SEGMENT} member or no other customer")


def _visit_pricing(url: str, write_key: str, ids: dict[str, str]) -> None:
    """A ``/pricing`` page view as a website reports it: the official Segment client if present."""
    properties = {"path": "/pricing", "url": "https://example.com/pricing"}
    try:
        from segment.analytics import Client
    except ImportError:  # a production install without the dev extras
        body = {"type": "page", "name": "Pricing", "properties": properties}
        body |= {"userId": ids.get("user_id"), "anonymousId": ids.get("anonymous_id")}
        requests.post(f"{url}/v1/page", json=body, auth=(write_key, ""), timeout=10)
        return
    client = Client(write_key, host=url, sync_mode=True)
    client.page(
        user_id=ids.get("user_id"),
        anonymous_id=ids.get("anonymous_id"),
        name="Pricing",
        properties=properties,
    )


def run_pricing_demo(
    db_path: str | Path,
    workdir: str | Path,
    *,
    slack_url: str | None = None,
    write_key: str = "demo-write-key",
    timeout_s: float = 10.0,
) -> PricingDemo:
    """Export the snapshot of ``db_path``, run the collector, send two pricing-page visits."""
    workdir = Path(workdir)
    snapshot_dir = workdir / "snapshot"
    version = refresh(db_path, snapshot_dir)
    store = ProfileStore(version)
    high, other = pick_customers(store)
    app = create_app(
        events_dir=Path(os.environ.get("CDP_EVENTS_DIR") or workdir / "collected"),
        write_keys={write_key},
        snapshot_dir=snapshot_dir,
        triggers_path=config.PACKAGE_DIR / "triggers.yml",
        firings_dir=workdir / "trigger_firings",
        slack_url=slack_url if slack_url is not None else config.env("SLACK_WEBHOOK_URL"),
    )
    with ServerThread(app) as server:
        for who in (high, other):
            _visit_pricing(server.url, write_key, {who["id_type"]: who["id_value"]})
        deadline = time.monotonic() + timeout_s
        engine = server.collector.triggers
        engine.wait_idle(timeout_s)
        firings = engine.firings.read()
        while not firings and time.monotonic() < deadline:
            time.sleep(0.05)
            firings = engine.firings.read()
    result = PricingDemo(high_value=high, other=other, firings=firings)
    result.fired_for = [f["customer_id"] for f in firings if f["status"] == "delivered"]
    result.latency_ms = [f["latency_ms"] for f in firings if f.get("latency_ms") is not None]
    log.info(result.describe())
    return result
