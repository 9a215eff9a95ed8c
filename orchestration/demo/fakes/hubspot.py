"""HubSpot CRM v3 (read side): list and search of contacts and companies, as HubSpot serves them.

Objects are ``{"id", "properties": {...}, "createdAt", "updatedAt", "archived"}`` with every
property value a string. ``GET /crm/v3/objects/<type>`` pages with ``limit`` (max 100) and an
opaque ``after``; ``POST .../search`` filters, sorts on one property and pages by offset, with
HubSpot's hard cap of 10,000 results per query (a 400 past it), which clients must re-window
around. Write routes (batch upsert, lists, deletes) are added by a mixin operating on
``self.contacts``.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
from typing import Any

import orjson

from orchestration.demo.fakes.base import FakeServer, Request, Response, route
from orchestration.demo.generator import DemoData
from orchestration.demo.sources import vendor_rows

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.3fZ"  # polars strftime, for the generator frames
DEFAULT_PROPERTIES = {
    "contacts": [
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    ],
    "companies": ["createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"],
}
MODIFIED = {"contacts": "lastmodifieddate", "companies": "hs_lastmodifieddate"}


def hubspot_time(when: dt.datetime) -> str:
    when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _error(status: int, message: str, category: str) -> Response:
    return Response(
        status,
        {"status": "error", "message": message, "correlationId": "fake", "category": category},
    )


def _as_property(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _millis(value: str) -> int:
    """A HubSpot datetime filter value: epoch milliseconds, or an ISO-8601 string."""
    if value.lstrip("-").isdigit():
        return int(value)
    return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def _to_millis(iso: str | None) -> int | None:
    return _millis(iso) if iso else None


def _prop(obj: dict, name: str) -> str | None:
    """A property as HubSpot reports it: system properties follow the object's own timestamps,
    whichever route (this fake's or the write mixin's) changed the object."""
    if name == "hs_object_id":
        return str(obj.get("id"))
    if name in ("lastmodifieddate", "hs_lastmodifieddate"):
        return obj.get("updatedAt") or obj["properties"].get(name)
    if name == "createdate":
        return obj["properties"].get(name) or obj.get("createdAt")
    return obj["properties"].get(name)


class HubSpotFake(FakeServer):
    name = "hubspot"
    search_cap = 10_000  # HubSpot's limit on results reachable by one search query

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.contacts: dict[str, dict] = {}
        self.companies: dict[str, dict] = {}
        self._ids = itertools.count(90_000_001)
        self._order: dict[str, tuple[int, list[tuple[int, str]], list[dict]]] = {}

    # -- building and mutating ---------------------------------------------------------------
    @classmethod
    def from_demo(cls, data: DemoData, **kwargs: Any) -> HubSpotFake:
        fake = cls(**kwargs)
        for kind, table in (("contacts", "hubspot.contacts"), ("companies", "hubspot.companies")):
            for row in vendor_rows(data, table, TIME_FORMAT):
                row = dict(row)
                if kind == "companies":
                    row["hs_lastmodifieddate"] = row.pop("lastmodifieddate")
                fake.store(kind)[row["id"]] = fake._object(kind, row["id"], row)
        return fake

    def store(self, kind: str) -> dict[str, dict]:
        return self.contacts if kind == "contacts" else self.companies

    def _object(self, kind: str, object_id: str, props: dict[str, Any]) -> dict:
        properties = {k: _as_property(v) for k, v in props.items() if k != "id"}
        properties["hs_object_id"] = object_id
        return {
            "id": object_id,
            "properties": properties,
            "createdAt": properties.get("createdate"),
            "updatedAt": properties.get(MODIFIED[kind]),
            "archived": False,
        }

    def _touch(self, kind: str, obj: dict, when: dt.datetime | None) -> None:
        stamp = hubspot_time(when or dt.datetime.now(dt.UTC))
        obj["properties"][MODIFIED[kind]] = stamp
        obj["updatedAt"] = stamp

    def update_object(
        self, kind: str, object_id: str, when: dt.datetime | None = None, **props: Any
    ) -> dict:
        with self._lock:
            obj = self.store(kind)[object_id]
            obj["properties"].update({k: _as_property(v) for k, v in props.items()})
            self._touch(kind, obj, when)
            return obj

    def add_object(self, kind: str, when: dt.datetime | None = None, **props: Any) -> dict:
        with self._lock:
            object_id = str(next(self._ids))
            stamp = hubspot_time(when or dt.datetime.now(dt.UTC))
            obj = self._object(kind, object_id, {"createdate": stamp, **props})
            self._touch(kind, obj, when)
            self.store(kind)[object_id] = obj
            return obj

    def update_contact(self, contact_id: str, **props: Any) -> dict:
        return self.update_object("contacts", contact_id, **props)

    def add_contact(self, **props: Any) -> dict:
        return self.add_object("contacts", **props)

    # -- HubSpot's behaviour -----------------------------------------------------------------
    def check_auth(self, request: Request) -> Response | None:
        if self.token is None or request.headers.get("authorization") == f"Bearer {self.token}":
            return None
        return _error(
            401,
            "Authentication credentials not found. This API supports OAuth 2.0 authentication.",
            "INVALID_AUTHENTICATION",
        )

    def rate_limited_response(self) -> Response:
        response = _error(429, "You have reached your secondly limit.", "RATE_LIMITS")
        response.body["policyName"] = "SECONDLY"
        response.headers["Retry-After"] = str(self.retry_after_seconds)
        return response

    @staticmethod
    def _view(obj: dict, properties: list[str] | None, kind: str) -> dict:
        wanted = properties or DEFAULT_PROPERTIES[kind]
        return {**obj, "properties": {p: _prop(obj, p) for p in wanted}}

    @staticmethod
    def _id_key(object_id: object) -> tuple[int, str]:
        return (len(str(object_id)), str(object_id))

    def _by_id(self, kind: str) -> tuple[list[tuple[int, str]], list[dict]]:
        """Objects in id order with their sort keys, cached until objects are added or removed
        (the write mixin adds contacts straight into the store, so the size is the check)."""
        store = self.store(kind)
        cached = self._order.get(kind)
        if cached is None or cached[0] != len(store):
            objects = sorted(store.values(), key=lambda o: self._id_key(o.get("id")))
            cached = (len(store), [self._id_key(o.get("id")) for o in objects], objects)
            self._order[kind] = cached
        return cached[1], cached[2]

    def _sorted_live(self, kind: str) -> list[dict]:
        return [o for o in self._by_id(kind)[1] if not o.get("archived")]

    @route("GET", r"/crm/v3/objects/(?P<kind>contacts|companies)")
    def list_objects(self, request: Request) -> Response:
        kind = request.params["kind"]
        limit = int(request.arg("limit", "10"))
        if not 1 <= limit <= 100:
            return _error(400, "limit must be between 1 and 100", "VALIDATION_ERROR")
        props = [p for p in (request.arg("properties") or "").split(",") if p] or None
        keys, objects = self._by_id(kind)
        after = request.arg("after")
        start = bisect.bisect_right(keys, self._id_key(after)) if after else 0
        page: list[dict] = []
        more = False
        for obj in itertools.islice(objects, start, None):
            if obj.get("archived"):
                continue
            if len(page) == limit:
                more = True
                break
            page.append(obj)
        body: dict[str, Any] = {"results": [self._view(o, props, kind) for o in page]}
        if more:
            last = page[-1]["id"]
            body["paging"] = {
                "next": {"after": last, "link": f"{self.url}{request.path}?after={last}"}
            }
        return Response(200, orjson.dumps(body))  # orjson: the fake must not be the bottleneck

    @route("POST", r"/crm/v3/objects/(?P<kind>contacts|companies)/search")
    def search(self, request: Request) -> Response:
        kind = request.params["kind"]
        body = request.json() or {}
        limit = int(body.get("limit", 10))
        offset = int(body.get("after") or 0)
        if not 1 <= limit <= 200:
            return _error(400, "limit must be between 1 and 200", "VALIDATION_ERROR")
        if offset + limit > self.search_cap:
            return _error(
                400,
                f"There was a problem with the request: paging beyond {self.search_cap} results",
                "VALIDATION_ERROR",
            )
        objects = [o for o in self._sorted_live(kind) if self._matches(o, body)]
        for sort in reversed(body.get("sorts") or []):
            prop = sort["propertyName"]
            objects.sort(
                key=lambda o, p=prop: self._sort_value(o, p),
                reverse=sort.get("direction") == "DESCENDING",
            )
        page = objects[offset : offset + limit]
        out: dict[str, Any] = {
            "total": len(objects),
            "results": [self._view(o, body.get("properties"), kind) for o in page],
        }
        if offset + limit < len(objects):
            out["paging"] = {"next": {"after": str(offset + limit)}}
        return Response(200, orjson.dumps(out))

    @staticmethod
    def _sort_value(obj: dict, prop: str) -> tuple:
        value = _prop(obj, prop)
        if prop.endswith("date"):
            return (0, _to_millis(value) or 0)
        return (0, value or "")

    @staticmethod
    def _matches(obj: dict, body: dict) -> bool:
        groups = body.get("filterGroups") or []
        if not groups:
            return True
        return any(all(HubSpotFake._test(obj, f) for f in g.get("filters", [])) for g in groups)

    @staticmethod
    def _test(obj: dict, flt: dict) -> bool:
        prop, op = flt["propertyName"], flt["operator"]
        value = _prop(obj, prop)
        if op == "HAS_PROPERTY":
            return value is not None
        if value is None:
            return op == "NOT_HAS_PROPERTY"
        if prop.endswith("date"):
            left, right = _millis(value), _millis(str(flt["value"]))
        else:
            left, right = value, str(flt["value"])
        return {
            "EQ": left == right,
            "NEQ": left != right,
            "GT": left > right,
            "GTE": left >= right,
            "LT": left < right,
            "LTE": left <= right,
        }[op]
