"""Zendesk Support (read side): the cursor-based incremental exports of users and tickets.

``GET /api/v2/incremental/<users|tickets>/cursor.json?start_time=<unix>`` starts an export,
``?cursor=<after_cursor>`` continues it; each page holds up to ``per_page`` (max 1000) items
ordered by ``updated_at``, with ``after_cursor``, ``after_url`` and ``end_of_stream``. The cursor
of the last page is where the next export resumes: an item updated later is exported again
(Zendesk exports changes, not just new items). Authentication is HTTP basic with
``{email}/token:{api_token}``.
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import itertools
import os
from typing import Any

import orjson

from orchestration.demo.fakes.base import FakeServer, Request, Response, route
from orchestration.demo.generator import DemoData
from orchestration.demo.sources import vendor_rows

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
MAX_PER_PAGE = 1000


def zendesk_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(iso: str | None) -> int:
    if not iso:
        return 0
    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def _encode(position: tuple[int, int]) -> str:
    return base64.urlsafe_b64encode(f"{position[0]}.{position[1]}".encode()).decode()


def _decode(cursor: str) -> tuple[int, int] | None:
    try:
        stamp, item = base64.urlsafe_b64decode(cursor.encode()).decode().split(".")
        return int(stamp), int(item)
    except (ValueError, UnicodeDecodeError):
        return None


class ZendeskFake(FakeServer):
    name = "zendesk"

    def __init__(
        self, *, email: str | None = None, api_token: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        # the demo starts the fake after exporting its credentials to the environment
        self.email = email or os.environ.get("ZENDESK_EMAIL")
        self.api_token = api_token or os.environ.get("ZENDESK_API_TOKEN")
        self.users: dict[int, dict] = {}
        self.tickets: dict[int, dict] = {}
        self._ids = itertools.count(95_000_001)
        self._version = 0
        self._order: dict[str, tuple] = {}

    @classmethod
    def from_demo(cls, data: DemoData, **kwargs: Any) -> ZendeskFake:
        fake = cls(**kwargs)
        for row in vendor_rows(data, "zendesk.users", TIME_FORMAT):
            fake.users[row["id"]] = {"url": fake._url("users", row["id"]), "active": True, **row}
        for row in vendor_rows(data, "zendesk.tickets", TIME_FORMAT):
            fake.tickets[row["id"]] = {
                "url": fake._url("tickets", row["id"]),
                "type": "question",
                "tags": [],
                **row,
            }
        return fake

    def _url(self, kind: str, item_id: int) -> str:
        return f"https://example.zendesk.com/api/v2/{kind}/{item_id}.json"

    def store(self, kind: str) -> dict[int, dict]:
        return self.users if kind == "users" else self.tickets

    # -- mutations for incremental tests -----------------------------------------------------
    def update(self, kind: str, item_id: int, when: dt.datetime | None = None, **fields) -> dict:
        with self._lock:
            item = self.store(kind)[item_id]
            item.update(fields)
            item["updated_at"] = zendesk_time(when or dt.datetime.now(dt.UTC))
            self._version += 1
            return item

    def add(self, kind: str, when: dt.datetime | None = None, **fields: Any) -> dict:
        with self._lock:
            item_id = fields.pop("id", None) or next(self._ids)
            stamp = zendesk_time(when or dt.datetime.now(dt.UTC))
            item = {"id": item_id, "url": self._url(kind, item_id), "created_at": stamp}
            item.update(fields)
            item["updated_at"] = stamp
            self.store(kind)[item_id] = item
            self._version += 1
            return item

    def update_user(self, user_id: int, **fields: Any) -> dict:
        return self.update("users", user_id, **fields)

    def add_user(self, **fields: Any) -> dict:
        return self.add("users", **fields)

    # -- Zendesk's behaviour -----------------------------------------------------------------
    def check_auth(self, request: Request) -> Response | None:
        if not self.email or not self.api_token:
            return None
        expected = base64.b64encode(f"{self.email}/token:{self.api_token}".encode()).decode()
        if request.headers.get("authorization") == f"Basic {expected}":
            return None
        return Response(401, {"error": "Couldn't authenticate you"})

    def rate_limited_response(self) -> Response:
        return Response(
            429,
            {
                "error": "APIRateLimitExceeded",
                "description": "Number of allowed API requests per minute exceeded",
            },
            {"Retry-After": str(self.retry_after_seconds)},
        )

    def _in_export_order(self, kind: str) -> tuple[list[tuple[int, int]], list[dict]]:
        """Items by ``(updated_at, id)``, cached until an item is added or updated."""
        store = self.store(kind)
        key = (len(store), self._version)
        cached = self._order.get(kind)
        if cached is None or cached[0] != key:
            pairs = sorted(
                ((_epoch(item.get("updated_at")), int(item["id"])), item) for item in store.values()
            )
            cached = (key, [p for p, _ in pairs], [item for _, item in pairs])
            self._order[kind] = cached
        return cached[1], cached[2]

    @route("GET", r"/api/v2/incremental/(?P<kind>users|tickets)/cursor\.json")
    def export(self, request: Request) -> Response:
        kind = request.params["kind"]
        per_page = min(int(request.arg("per_page", str(MAX_PER_PAGE))), MAX_PER_PAGE)
        cursor, start_time = request.arg("cursor"), request.arg("start_time")
        if cursor:
            position = _decode(cursor)
            if position is None:
                return Response(
                    400, {"error": "InvalidPaginationParameter", "description": "cursor is invalid"}
                )
        elif start_time is not None and start_time.isdigit():
            position = (int(start_time), -1)
        else:
            return Response(
                400,
                {
                    "error": "InvalidPaginationParameter",
                    "description": "start_time or cursor is required",
                },
            )
        positions, items = self._in_export_order(kind)
        start = bisect.bisect_right(positions, position)
        page = list(
            zip(positions[start : start + per_page], items[start : start + per_page], strict=True)
        )
        end_of_stream = start + per_page >= len(items)
        last = page[-1][0] if page else position
        next_cursor = _encode(last)
        base = f"{self.url}{request.path}"
        body = {
            kind: [item for _, item in page],
            "after_cursor": next_cursor,
            "after_url": f"{base}?cursor={next_cursor}",
            "before_cursor": None,
            "before_url": None,
            "end_of_stream": end_of_stream,
        }
        return Response(200, orjson.dumps(body))  # orjson: the fake must not be the bottleneck
