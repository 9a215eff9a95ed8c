"""Stripe billing: customers and charges.

Stripe lists newest first. A pass walks back in time with ``starting_after`` from the newest
object, filtered ``created[gte]`` the cursor; the cursor that ends a pass is the newest
``created`` it saw, so the next pass gets what was created since (``gte`` re-reads only the
objects of that very second, which the loader recognizes as unchanged). A pass killed midway
resumes after the last committed object. Changes to existing objects (a customer's new email)
are not in a ``created`` window: they would need Stripe's Events API, which this does not read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from connectors.base import Column, Page, StreamSpec, specs_by_name
from connectors.http import HttpConnector, bearer_client, dump_records

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
PAGE_LIMIT = 100


class StripeConnector(HttpConnector):
    name = "stripe"
    specs = specs_by_name(CUSTOMERS, CHARGES)

    @classmethod
    def from_env(cls) -> StripeConnector:
        # 100 read requests / s in live mode, 25 in test mode
        return cls(bearer_client("stripe", "STRIPE_API_KEY", 20.0))

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        state = state or {}
        since = state.get("since")
        after = state.get("starting_after")  # set only while a pass is under way
        newest = state.get("pass_newest", since)
        while True:
            params: dict[str, Any] = {"limit": PAGE_LIMIT}
            if since is not None:
                params["created[gte]"] = since
            if after:
                params["starting_after"] = after
            body = self.client.get_json(f"/v1/{stream}", params)
            data = body.get("data") or []
            for obj in data:
                created = obj.get("created")
                if isinstance(created, int) and (newest is None or created > newest):
                    newest = created
            if body.get("has_more") and data:
                after = data[-1]["id"]
                cursor = {"since": since, "starting_after": after, "pass_newest": newest}
                yield Page(dump_records(data), cursor)
            else:
                yield Page(dump_records(data), {"since": newest})
                return
