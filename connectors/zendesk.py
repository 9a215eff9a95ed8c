"""Zendesk Support: users and tickets through the cursor-based incremental export.

The first export starts at ``start_time`` (``ZENDESK_START_TIME``, unix seconds; 0 = all) and
follows ``after_cursor`` until ``end_of_stream``. Every page's cursor is committed with its
records, and the cursor of the last page is kept for the next run, as Zendesk recommends: the
next export returns what changed since, including updates to items already loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from connectors import settings
from connectors.base import Column, NotConfigured, Page, StreamSpec, specs_by_name
from connectors.http import HttpClient, HttpConnector, default_rate_limit, json_page

USERS = StreamSpec(
    name="users",
    columns=(
        Column("id", "bigint"),
        Column("email"),
        Column("phone"),
        Column("name"),
        Column("role"),
        Column("created_at", "timestamp"),
        Column("updated_at", "timestamp"),
    ),
    identifiers={"email": "email", "phone": "phone", "id": "zendesk_user_id"},
)
TICKETS = StreamSpec(
    name="tickets",
    columns=(
        Column("id", "bigint"),
        Column("requester_id", "bigint"),
        Column("subject"),
        Column("status"),
        Column("priority"),
        Column("created_at", "timestamp"),
        Column("updated_at", "timestamp"),
    ),
    identifiers={"requester_id": "zendesk_user_id"},
)
PER_PAGE = 1000


class ZendeskConnector(HttpConnector):
    name = "zendesk"
    specs = specs_by_name(USERS, TICKETS)

    def __init__(self, client: HttpClient, start_time: int = 0) -> None:
        super().__init__(client)
        self.start_time = start_time

    @classmethod
    def from_env(cls) -> ZendeskConnector:
        base, email, token = (
            settings.base_url("zendesk"),
            settings.env("ZENDESK_EMAIL"),
            settings.env("ZENDESK_API_TOKEN"),
        )
        missing = [
            name
            for name, value in (
                ("ZENDESK_BASE_URL", base),
                ("ZENDESK_EMAIL", email),
                ("ZENDESK_API_TOKEN", token),
            )
            if not value
        ]
        if missing:
            raise NotConfigured(f"{', '.join(missing)} not set")
        client = HttpClient(
            "zendesk",
            base,
            credential_vars=("ZENDESK_EMAIL", "ZENDESK_API_TOKEN"),
            auth=(f"{email}/token", token),
            secrets=(token,),
            # incremental exports: 10 requests per minute
            rate_limit_per_s=default_rate_limit("zendesk", base, 10 / 60),
        )
        return cls(client, int(settings.env("ZENDESK_START_TIME") or 0))

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        cursor = (state or {}).get("cursor")
        path = f"/api/v2/incremental/{stream}/cursor.json"
        while True:
            params: dict[str, Any] = {"per_page": PER_PAGE}
            if cursor:
                params["cursor"] = cursor
            else:
                params["start_time"] = self.start_time
            body = self.client.get_json(path, params)
            cursor = body.get("after_cursor") or cursor
            yield json_page(body.get(stream) or [], {"cursor": cursor})
            if body.get("end_of_stream", True):
                return
