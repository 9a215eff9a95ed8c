"""Mailchimp Marketing API: the members of every audience, with their subscription status.

Every run lists the audiences (``GET /3.0/lists``) and reads each one's members
(``GET /3.0/lists/{id}/members``) sorted by ``last_changed`` ascending, ``since_last_changed``
the audience's cursor. As with HubSpot's search, each page starts a new window at the newest
change seen (offset paging over a set that changes while it is read can skip members; a window
cannot), so the cursor after every committed page is simply that newest ``last_changed`` (a tie
group larger than a page is paged by offset inside the window). The window reaches back one
second, so the vendor's "changed after" never drops members that share the cursor's second;
the loader recognizes the few re-read unchanged.

A member's ``id`` is the MD5 of its lower-cased address: the same in every audience. The raw
key is therefore ``<list_id>:<id>``, which the connector adds to each record as ``_member_key``
(the one field of ``_record`` that Mailchimp did not send). Mailchimp sends absent timestamps as
``""``; they are kept as null so the record types instead of going to quarantine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from connectors.base import Column, Page, StreamSpec, specs_by_name
from connectors.http import HttpConnector, json_page, keyed_client

MEMBERS = StreamSpec(
    name="members",
    columns=(
        Column("member_key", path="$._member_key"),
        Column("id"),
        Column("email_address"),
        Column("status"),
        Column("list_id"),
        Column("fname", path="$.merge_fields.FNAME"),
        Column("lname", path="$.merge_fields.LNAME"),
        Column("phone", path="$.merge_fields.PHONE"),
        Column("source"),
        Column("unsubscribe_reason"),
        Column("timestamp_opt", "timestamp"),
        Column("last_changed", "timestamp"),
    ),
    primary_key="member_key",
    identifiers={"email_address": "email", "phone": "phone", "id": "mailchimp_member_id"},
)
PAGE_COUNT = 1000  # Mailchimp's maximum ``count``
LOOK_BACK = dt.timedelta(seconds=1)
TIMESTAMPS = ("timestamp_opt", "timestamp_signup", "last_changed")
MEMBER_FIELDS = (
    ",".join(
        f"members.{f}"
        for f in (
            "id",
            "email_address",
            "status",
            "list_id",
            "merge_fields",
            "source",
            "unsubscribe_reason",
            "timestamp_signup",
            "timestamp_opt",
            "last_changed",
        )
    )
    + ",total_items"
)


def base_url_for(key: str) -> str:
    """``https://<dc>.api.mailchimp.com``: the data center is the key's suffix after ``-``."""
    dc = key.rsplit("-", 1)[-1] if "-" in key else "us1"
    return f"https://{dc}.api.mailchimp.com"


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(dt.UTC)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds")


def _record(member: dict[str, Any], list_id: str) -> dict[str, Any]:
    out = {**member, "_member_key": f"{member.get('list_id') or list_id}:{member.get('id')}"}
    for key in TIMESTAMPS:
        if out.get(key) == "":
            out[key] = None
    return out


class MailchimpConnector(HttpConnector):
    name = "mailchimp"
    specs = specs_by_name(MEMBERS)

    @classmethod
    def from_env(cls) -> MailchimpConnector:
        # 10 simultaneous connections; one at a time here, a few per second is courteous
        client = keyed_client(
            "mailchimp",
            "MAILCHIMP_API_KEY",
            10.0,
            basic_auth_user="composable-cdp",
            base_for_key=base_url_for,
        )
        return cls(client)

    def _list_ids(self) -> list[str]:
        ids, offset = [], 0
        while True:
            params = {"count": PAGE_COUNT, "offset": offset, "fields": "lists.id,total_items"}
            body = self.client.get_json("/3.0/lists", params)
            ids += [lst["id"] for lst in body.get("lists") or []]
            offset += PAGE_COUNT
            if offset >= int(body.get("total_items") or 0):
                return ids

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        since: dict[str, str] = dict((state or {}).get("since") or {})
        offsets: dict[str, int] = dict((state or {}).get("offset") or {})
        for list_id in self._list_ids():
            yield from self._members(list_id, since, offsets)

    def _members(
        self, list_id: str, since: dict[str, str], offsets: dict[str, int]
    ) -> Iterator[Page]:
        window = _parse(since[list_id]) if list_id in since else None
        offset = offsets.get(list_id, 0)
        path = f"/3.0/lists/{list_id}/members"
        while True:
            params: dict[str, Any] = {
                "count": PAGE_COUNT,
                "offset": offset,
                "sort_field": "last_changed",
                "sort_dir": "ASC",
                "fields": MEMBER_FIELDS,
            }
            if window is not None:
                params["since_last_changed"] = _iso(window - LOOK_BACK)
            body = self.client.get_json(path, params)
            members = body.get("members") or []
            newest = window
            for member in members:
                if member.get("last_changed"):
                    changed = _parse(member["last_changed"])
                    newest = changed if newest is None or changed > newest else newest
            full = len(members) >= PAGE_COUNT
            if full and newest is not None and (window is None or newest > window):
                window, offset = newest, 0
            elif full:
                offset += len(members)
            else:
                offset = 0
            if window is None and newest is not None:
                window = newest
            if window is not None:
                since[list_id] = _iso(window)
            offsets[list_id] = offset
            records = [_record(m, list_id) for m in members]
            yield json_page(records, {"since": dict(since), "offset": dict(offsets)})
            if not full:
                return
