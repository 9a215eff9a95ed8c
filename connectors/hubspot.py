"""HubSpot CRM: contacts and companies.

The first run lists every object (``GET /crm/v3/objects/<type>``, resumable by its ``after``
token). Later runs search on the last-modified property, ``GTE`` the cursor, sorted ascending:
after each committed page the cursor is the newest modification seen, so a kill only re-reads
records that share that timestamp. HubSpot serves at most 10,000 results per search query; at
that cap the search starts again from the newest modification seen (a new window).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

from connectors.base import Column, ConnectorError, Page, StreamSpec, specs_by_name
from connectors.http import HttpClient, HttpConnector, bearer_client, json_page

log = logging.getLogger(__name__)

CONTACTS = StreamSpec(
    name="contacts",
    columns=(
        Column("id"),
        *(
            Column(name, kind, f"$.properties.{name}")
            for name, kind in [
                ("email", "varchar"),
                ("firstname", "varchar"),
                ("lastname", "varchar"),
                ("phone", "varchar"),
                ("company", "varchar"),
                ("lifecyclestage", "varchar"),
                ("hs_email_optout", "boolean"),
                ("createdate", "timestamp"),
                ("lastmodifieddate", "timestamp"),
            ]
        ),
    ),
    identifiers={"email": "email", "phone": "phone", "id": "hubspot_contact_id"},
)
COMPANIES = StreamSpec(
    name="companies",
    columns=(
        Column("id"),
        Column("name", path="$.properties.name"),
        Column("domain", path="$.properties.domain"),
        Column("createdate", "timestamp", "$.properties.createdate"),
        Column("lastmodifieddate", "timestamp", "$.properties.hs_lastmodifieddate"),
    ),
)
# the property each object type records its last modification in (HubSpot names differ)
MODIFIED = {"contacts": "lastmodifieddate", "companies": "hs_lastmodifieddate"}
PROPERTIES = {
    "contacts": [c.json_path.removeprefix("$.properties.") for c in CONTACTS.columns[1:]],
    "companies": ["name", "domain", "createdate", "hs_lastmodifieddate"],
}
LIST_LIMIT = 100  # HubSpot's maximum page size for list endpoints
SEARCH_LIMIT = 200  # and for search
SEARCH_CAP = 10_000
CLOCK_SKEW_MS = 5 * 60 * 1000  # the first incremental window reaches back this far
SEARCH_LAG_MS = 60 * 1000  # and every later one this far behind the newest change seen


def _millis(iso: str | None) -> int | None:
    if not iso:
        return None
    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


class HubSpotConnector(HttpConnector):
    name = "hubspot"
    specs = specs_by_name(CONTACTS, COMPANIES)

    def __init__(self, client: HttpClient, search_cap: int | None = None) -> None:
        super().__init__(client)
        self.search_cap = search_cap or SEARCH_CAP

    @classmethod
    def from_env(cls) -> HubSpotConnector:
        # 110 requests / 10 s for private apps; search endpoints allow 5 / s
        return cls(bearer_client("hubspot", "HUBSPOT_ACCESS_TOKEN", 4.0))

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        if state and state.get("mode") == "incremental":
            # the search index lags writes by seconds: look back a little at every run start
            yield from self._search(stream, int(state["since_ms"]) - SEARCH_LAG_MS)
        else:
            yield from self._list(stream, state or {})

    def _list(self, stream: str, state: dict[str, Any]) -> Iterator[Page]:
        started_ms = state.get("started_ms") or int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        after = state.get("after")
        path = f"/crm/v3/objects/{stream}"
        while True:
            params = {"limit": LIST_LIMIT, "properties": ",".join(PROPERTIES[stream])}
            if after:
                params["after"] = after
            body = self.client.get_json(path, params)
            after = ((body.get("paging") or {}).get("next") or {}).get("after")
            records = body.get("results") or []
            if after:
                yield json_page(records, {"mode": "full", "after": after, "started_ms": started_ms})
            else:
                # everything modified since the listing began is picked up by the first search
                since = started_ms - CLOCK_SKEW_MS
                yield json_page(records, {"mode": "incremental", "since_ms": since})
                return

    def _search(self, stream: str, since_ms: int) -> Iterator[Page]:
        """Search ``GTE`` the newest modification seen, a new window for every page.

        Offset paging over a result set that changes while it is read (a record modified
        mid-run jumps to the end) can skip records; starting each page at the newest timestamp
        seen cannot, costs only re-reading the few records sharing that timestamp, and never
        comes near the 10,000-result cap. Only a tie group larger than a page is paged by
        offset, and one larger than the cap is an error rather than a silent gap.
        """
        path = f"/crm/v3/objects/{stream}/search"
        prop = MODIFIED[stream]
        window, offset, newest = since_ms, 0, since_ms
        while True:
            if offset + SEARCH_LIMIT > self.search_cap:
                raise ConnectorError(
                    f"hubspot {stream}: more than {self.search_cap} records modified at "
                    f"{window} ms; the search API cannot page through them"
                )
            gte = {"propertyName": prop, "operator": "GTE", "value": str(window)}
            body = self.client.post_json(
                path,
                {
                    "filterGroups": [{"filters": [gte]}],
                    "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
                    "properties": PROPERTIES[stream],
                    "limit": SEARCH_LIMIT,
                    "after": str(offset),
                },
            )
            results = body.get("results") or []
            for obj in results:
                stamp = _millis((obj.get("properties") or {}).get(prop))
                if stamp is not None and stamp > newest:
                    newest = stamp
            yield json_page(results, {"mode": "incremental", "since_ms": newest})
            if not ((body.get("paging") or {}).get("next") or {}).get("after"):
                return
            if newest > window:
                window, offset = newest, 0
            else:
                offset += len(results)
