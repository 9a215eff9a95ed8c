"""Stripe billing: customers and charges.

Stripe lists newest first. A pass walks back in time with ``starting_after`` from the newest
object, filtered ``created[gte]`` the cursor; the cursor that ends a pass is the newest
``created`` it saw, so the next pass gets what was created since (``gte`` re-reads only the
objects of that very second, which the loader recognizes as unchanged). A pass killed midway
resumes after the last committed object. Changes to existing objects (a customer's new email, a
refund) are not in a ``created`` window: from the second run on they are read from the Events
API (``customer.updated``, ``charge.updated|refunded|captured`` since the last run), whose
events carry the object as it became.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from connectors.base import Column, ConnectorError, Page, StreamSpec, specs_by_name
from connectors.http import HttpConnector, bearer_client, json_page

CUSTOMERS = StreamSpec(
    name="customers",
    columns=(
        Column("id"),
        Column("email"),
        Column("name"),
        Column("phone"),
        Column("user_id", path="$.metadata.user_id"),
        Column("created", "epoch"),
    ),
    identifiers={
        "email": "email",
        "phone": "phone",
        "id": "stripe_customer_id",
        "user_id": "user_id",
    },
)
CHARGES = StreamSpec(
    name="charges",
    columns=(
        Column("id"),
        Column("customer"),
        Column("amount", "bigint"),
        Column("currency"),
        Column("status"),
        Column("paid", "boolean"),
        Column("refunded", "boolean"),
        Column("created", "epoch"),
    ),
    identifiers={"customer": "stripe_customer_id"},
)
log = logging.getLogger(__name__)

PAGE_LIMIT = 100
CLOCK_SKEW_S = 300
# the events that carry a changed object; creations are read from the object lists themselves
UPDATE_EVENTS = {
    "customers": ["customer.updated"],
    "charges": ["charge.updated", "charge.refunded", "charge.captured"],
}


class StripeConnector(HttpConnector):
    name = "stripe"
    specs = specs_by_name(CUSTOMERS, CHARGES)

    @classmethod
    def from_env(cls) -> StripeConnector:
        # 100 read requests / s in live mode, 25 in test mode
        return cls(bearer_client("stripe", "STRIPE_API_KEY", 20.0))

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        state = state or {}
        if "events_since" not in state:
            # changes made from now on are read from the Events API on later runs
            state = {**state, "events_since": int(time.time()) - CLOCK_SKEW_S}
            first_run = True
        else:
            first_run = False
        yield from self._created_pass(stream, state)
        if not first_run:
            yield from self._updates(stream, state)

    def _created_pass(self, stream: str, state: dict[str, Any]) -> Iterator[Page]:
        since = state.get("since")
        after = state.get("starting_after")  # set only while a pass is under way
        newest = state.get("pass_newest", since)
        keep = {"events_since": state["events_since"]}
        while True:
            params: dict[str, Any] = {"limit": PAGE_LIMIT}
            if since is not None:
                params["created[gte]"] = since
            if after:
                params["starting_after"] = after
            try:
                body = self.client.get_json(f"/v1/{stream}", params)
            except ConnectorError as exc:
                if not (after and exc.status == 400):
                    raise
                # the object a killed pass stopped at was deleted since: walk the window again
                log.warning(
                    "stripe %s: resuming after %s failed; restarting the pass", stream, after
                )
                after, newest = None, since
                continue
            data = body.get("data") or []
            for obj in data:
                created = obj.get("created")
                if isinstance(created, int) and (newest is None or created > newest):
                    newest = created
            if body.get("has_more") and data:
                after = data[-1]["id"]
                cursor = {"since": since, "starting_after": after, "pass_newest": newest, **keep}
                yield json_page(data, cursor)
            else:
                state["since"] = newest
                yield json_page(data, {"since": newest, **keep})
                return

    def _updates(self, stream: str, state: dict[str, Any]) -> Iterator[Page]:
        """Objects changed since the last run, as the Events API's snapshots of them.

        Events come newest first; they are gathered and yielded oldest first so that the
        latest snapshot of an object wins, and the events cursor moves only with the last page
        (a kill re-reads the window; the loader recognizes what it already has).
        """
        since = state["events_since"]
        params: list[tuple[str, Any]] = [("limit", PAGE_LIMIT), ("created[gte]", since)]
        params += [("types[]", t) for t in UPDATE_EVENTS[stream]]
        events: list[dict] = []
        after = None
        while True:
            body = self.client.get_json(
                "/v1/events", [*params, *([("starting_after", after)] if after else [])]
            )
            data = body.get("data") or []
            events += data
            if not (body.get("has_more") and data):
                break
            after = data[-1]["id"]
        events.reverse()
        newest = max((e.get("created") or since for e in events), default=since)
        objects = [e["data"]["object"] for e in events if (e.get("data") or {}).get("object")]
        cursor = {"since": state.get("since"), "events_since": newest}
        for start in range(0, len(objects), PAGE_LIMIT * 10):
            chunk = objects[start : start + PAGE_LIMIT * 10]
            last = start + PAGE_LIMIT * 10 >= len(objects)
            yield json_page(chunk, cursor if last else None)
        if not objects:
            yield Page([], cursor)
