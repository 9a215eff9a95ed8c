"""Stripe (read side): customers and charges as Stripe's list API serves them.

Lists are newest first (``created`` descending), paged with ``limit`` (1 to 100) and
``starting_after=<object id>``, filtered with ``created[gte|gt|lte|lt]``, and answered as
``{"object": "list", "url", "has_more", "data"}``. Errors use Stripe's ``{"error": {...}}`` body.
"""

from __future__ import annotations

import bisect
import copy
import datetime as dt
import itertools
from typing import Any

import orjson

from orchestration.demo.fakes.base import FakeServer, Request, Response, route
from orchestration.demo.generator import DemoData
from orchestration.demo.sources import vendor_rows


def _error(status: int, message: str, kind: str = "invalid_request_error") -> Response:
    return Response(status, {"error": {"message": message, "type": kind}})


def _now() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp())


class StripeFake(FakeServer):
    name = "stripe"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.customers: dict[str, dict] = {}
        self.charges: dict[str, dict] = {}
        self._ids = itertools.count(0x900000)
        self._version = 0
        self._order: dict[str, tuple] = {}
        self.events: list[dict] = []  # oldest first; served newest first

    @classmethod
    def from_demo(cls, data: DemoData, **kwargs: Any) -> StripeFake:
        fake = cls(**kwargs)
        for row in vendor_rows(data, "stripe.customers", None):
            fake.customers[row["id"]] = fake._customer(row)
        for row in vendor_rows(data, "stripe.charges", None):
            fake.charges[row["id"]] = {"object": "charge", "livemode": False, **row}
        return fake

    @staticmethod
    def _customer(row: dict[str, Any]) -> dict:
        row = dict(row)
        user_id = row.pop("user_id", None)
        return {
            "object": "customer",
            "livemode": False,
            "description": None,
            "metadata": {"user_id": user_id} if user_id is not None else {},
            **row,
        }

    # -- mutations for incremental tests -----------------------------------------------------
    def add_customer(self, **fields: Any) -> dict:
        with self._lock:
            cid = fields.pop("id", None) or f"cus_{next(self._ids):x}"
            customer = self._customer({"id": cid, "created": _now(), **fields})
            self._version += 1
            self.customers[cid] = customer
            self._event("customer.created", customer)
            return customer

    def add_charge(self, customer: str, amount: int, **fields: Any) -> dict:
        with self._lock:
            cid = fields.pop("id", None) or f"ch_{next(self._ids):x}"
            charge = {
                "object": "charge",
                "id": cid,
                "customer": customer,
                "amount": amount,
                "currency": "usd",
                "status": "succeeded",
                "paid": True,
                "refunded": False,
                "created": _now(),
                **fields,
            }
            self._version += 1
            self.charges[cid] = charge
            self._event("charge.succeeded" if charge["paid"] else "charge.failed", charge)
            return charge

    def update_customer(self, customer_id: str, **fields: Any) -> dict:
        with self._lock:
            customer = self.customers[customer_id]
            previous = {k: customer.get(k) for k in fields}
            customer.update(fields)
            self._event("customer.updated", customer, previous)
            return customer

    def refund_charge(self, charge_id: str) -> dict:
        with self._lock:
            charge = self.charges[charge_id]
            charge.update(refunded=True, amount_refunded=charge.get("amount"))
            self._event("charge.refunded", charge, {"refunded": False})
            return charge

    def _event(self, kind: str, obj: dict, previous: dict | None = None) -> None:
        """Record an event as Stripe does: a snapshot of the object at that moment."""
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = previous
        self.events.append(
            {
                "id": f"evt_{next(self._ids):x}",
                "object": "event",
                "type": kind,
                "created": _now(),
                "data": data,
                "livemode": False,
            }
        )

    # -- Stripe's behaviour ------------------------------------------------------------------
    def check_auth(self, request: Request) -> Response | None:
        if self.token is None or request.headers.get("authorization") == f"Bearer {self.token}":
            return None
        return _error(401, "Invalid API Key provided: sk_test_****")

    def rate_limited_response(self) -> Response:
        response = _error(429, "Too many requests hit the API too quickly.", "rate_limit_error")
        response.headers["Retry-After"] = str(self.retry_after_seconds)
        return response

    def fault_response(self) -> Response:
        status = self._rng.choice([500, 502, 503])
        return _error(status, "An unknown error occurred", "api_error")

    def _newest_first(self, kind: str) -> tuple[list[dict], list[int], dict[str, int]]:
        """Objects newest first (Stripe's list order), negated ``created`` values and each id's
        position; cached until an object is added (tests that edit objects in place add none)."""
        store = self.customers if kind == "customers" else self.charges
        key = (len(store), self._version)
        cached = self._order.get(kind)
        if cached is None or cached[0] != key:
            objects = sorted(
                store.values(),
                key=lambda o: (o.get("created") or 0, str(o.get("id"))),
                reverse=True,
            )
            created = [-(o.get("created") or 0) for o in objects]
            position = {o.get("id"): i for i, o in enumerate(objects)}
            cached = (key, objects, created, position)
            self._order[kind] = cached
        return cached[1], cached[2], cached[3]

    @route("GET", r"/v1/(?P<kind>customers|charges)")
    def list_objects(self, request: Request) -> Response:
        kind = request.params["kind"]
        limit = int(request.arg("limit", "10"))
        if not 1 <= limit <= 100:
            return _error(400, "Invalid integer: limit must be between 1 and 100")
        objects, created, position = self._newest_first(kind)
        start, stop = 0, len(objects)
        # ``created`` is descending: bounds are found by bisecting its negation
        bounds = {
            f"created[{op}]": request.arg(f"created[{op}]") for op in ("gte", "gt", "lte", "lt")
        }
        if bounds["created[gte]"] is not None:
            stop = min(stop, bisect.bisect_right(created, -int(bounds["created[gte]"])))
        if bounds["created[gt]"] is not None:
            stop = min(stop, bisect.bisect_left(created, -int(bounds["created[gt]"])))
        if bounds["created[lte]"] is not None:
            start = max(start, bisect.bisect_left(created, -int(bounds["created[lte]"])))
        if bounds["created[lt]"] is not None:
            start = max(start, bisect.bisect_right(created, -int(bounds["created[lt]"])))
        after = request.arg("starting_after")
        if after:
            if after not in position:
                return _error(400, f"No such {kind[:-1]}: '{after}'")
            start = max(start, position[after] + 1)
        objects = objects[start:stop] if start < stop else []
        body = {
            "object": "list",
            "url": f"/v1/{kind}",
            "has_more": len(objects) > limit,
            "data": objects[:limit],
        }
        return Response(200, orjson.dumps(body))  # orjson: the fake must not be the bottleneck

    @route("GET", r"/v1/events")
    def list_events(self, request: Request) -> Response:
        """``/v1/events`` filtered by ``type`` or ``types[]`` and ``created[gte]``, newest first."""
        limit = int(request.arg("limit", "10"))
        if not 1 <= limit <= 100:
            return _error(400, "Invalid integer: limit must be between 1 and 100")
        types = set(request.query.get("types[]", [])) | set(request.query.get("type", []))
        since = int(request.arg("created[gte]", "0"))
        events = [
            e
            for e in reversed(self.events)
            if e["created"] >= since and (not types or e["type"] in types)
        ]
        after = request.arg("starting_after")
        if after:
            ids = [e["id"] for e in events]
            if after not in ids:
                return _error(400, f"No such event: '{after}'")
            events = events[ids.index(after) + 1 :]
        body = {
            "object": "list",
            "url": "/v1/events",
            "has_more": len(events) > limit,
            "data": events[:limit],
        }
        return Response(200, orjson.dumps(body))

    @route("GET", r"/v1/.*")
    def unknown(self, request: Request) -> Response:
        return _error(404, f"Unrecognized request URL (GET: {request.path}).")
