"""Mailchimp audience members (batch subscribe) and tag membership (static segments).

Members go 500 at a time to ``POST /3.0/lists/{list_id}`` with ``update_existing``; the answer's
``errors`` name the members Mailchimp refused. The sync's tag (``options.tag``) is a static
segment, found or created once per run; members are added to and, in mirror mode, removed from
it with ``POST /3.0/lists/{list_id}/segments/{segment_id}``. Without a tag, mirror mode archives
leavers. The address sent is kept as the row's ``dest_id``.

Consent-gated syncs (a ``purpose``): untagging alone would leave a member who withdrew consent
``subscribed``, so the newsletter could still reach them. A row removed because its gate closed
(consent withdrawn, or suppressed) is also set ``unsubscribed`` through the batch endpoint (which
Mailchimp documents as "batch subscribe or unsubscribe"); a member who merely left the segment
keeps the subscription. A row the sync sends anew (no ``dest_id``) is sent ``status: subscribed``,
so a customer who gives consent again is subscribed again.

Field mapping: ``email`` (or ``email_address``) is the address, every other destination field is
a merge tag (``FNAME``, ``LNAME``, ...). Requests go one at a time, well within Mailchimp's 10
simultaneous connections.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from reverse_etl import settings
from reverse_etl.config import SyncConfig
from reverse_etl.destinations.base import (
    BatchRejected,
    HttpDestination,
    MissingCredentials,
    Outcome,
    Row,
    jsonable,
    register,
)
from reverse_etl.http import HttpError

EMAIL_FIELDS = ("email", "email_address")
PAGE = 1000
# a new audience needs these; real accounts usually point the sync at an existing audience
DEFAULT_AUDIENCE = {
    "contact": {
        "company": "composable-cdp",
        "address1": "1 Warehouse Way",
        "city": "Springfield",
        "state": "CA",
        "zip": "00000",
        "country": "US",
    },
    "permission_reminder": "You opted in to marketing email from us.",
    "campaign_defaults": {
        "from_name": "composable-cdp",
        "from_email": "marketing@example.com",
        "subject": "",
        "language": "en",
    },
    "email_type_option": False,
}


def base_url_for(key: str) -> str:
    """``https://<dc>.api.mailchimp.com``: the data center is the key's suffix after ``-``."""
    dc = key.rsplit("-", 1)[-1] if "-" in key else "us1"
    return f"https://{dc}.api.mailchimp.com"


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def _member_errors(body: dict[str, Any]) -> dict[str, str]:
    """Batch subscribe's per-member ``errors``: lower-cased address -> message."""
    return {
        str(e.get("email_address", "")).strip().lower(): str(e.get("error"))
        for e in body.get("errors") or []
    }


def _segment_errors(body: dict[str, Any]) -> dict[str, str]:
    """A segment change's ``errors`` (addresses that are not list members): address -> message."""
    return {
        e.strip().lower(): str(err.get("error"))
        for err in body.get("errors") or []
        for e in err.get("email_addresses") or []
    }


@register
class MailchimpDestination(HttpDestination):
    kind: ClassVar[str] = "mailchimp"
    max_concurrency: ClassVar[int] = 10
    max_batch_size: ClassVar[int] = 500
    modes: ClassVar[frozenset[str]] = frozenset({"upsert", "mirror"})

    def __init__(self, sync: SyncConfig, client) -> None:
        super().__init__(sync, client)
        self.audience = sync.options.get("audience", "composable-cdp")
        self.list_id: str | None = sync.options.get("list_id")
        self.tag: str | None = sync.options.get("tag")
        self.segment_id: int | None = None
        self.status_if_new = sync.options.get("status_if_new", "subscribed")

    @classmethod
    def from_config(cls, sync: SyncConfig) -> MailchimpDestination:
        key = settings.env("MAILCHIMP_API_KEY")
        if not key:
            raise MissingCredentials("set MAILCHIMP_API_KEY to sync to Mailchimp")
        base_url = settings.env("MAILCHIMP_BASE_URL") or base_url_for(key)
        dest = cls(sync, cls.make_client(sync, base_url, key, auth=("composable-cdp", key)))
        dest.check_mode()
        return dest

    @classmethod
    def calls_per_batch(cls, action: str, sync: SyncConfig) -> int:
        has_tag = bool(sync.options.get("tag"))
        if action == "remove":
            if not has_tag:
                return min(sync.batch_size or cls.max_batch_size, cls.max_batch_size)
            return 2 if sync.purpose else 1  # at most: untag, then unsubscribe the withdrawn
        return 2 if has_tag else 1

    def _find(self, path: str, key: str, name: str) -> dict[str, Any] | None:
        offset = 0
        while True:
            page = self.client.request("GET", path, params={"count": PAGE, "offset": offset}).json()
            for item in page.get(key, []):
                if item.get("name") == name:
                    return item
            offset += PAGE
            if offset >= page.get("total_items", 0):
                return None

    def open(self) -> None:
        if self.list_id is None:
            found = self._find("/3.0/lists", "lists", self.audience)
            if found is None:
                found = self.client.request(
                    "POST", "/3.0/lists", json={"name": self.audience, **DEFAULT_AUDIENCE}
                ).json()
            self.list_id = found["id"]
        if self.tag:
            path = f"/3.0/lists/{self.list_id}/segments"
            found = self._find(path, "segments", self.tag)
            if found is None:
                created = self.client.request(
                    "POST", path, json={"name": self.tag, "static_segment": []}, ok=(400,)
                )
                found = created.json()
                if created.status_code == 400:  # "already exists": made meanwhile elsewhere
                    found = self._find(path, "segments", self.tag)
                if found is None or "id" not in found:
                    raise HttpError(created.status_code, f"cannot create tag {self.tag!r}")
            self.segment_id = int(found["id"])

    def _member(self, row: Row) -> dict[str, Any]:
        email = next((row.fields[f] for f in EMAIL_FIELDS if f in row.fields), row.key)
        merge = {k: jsonable(v) for k, v in row.fields.items() if k not in EMAIL_FIELDS}
        member = {
            "email_address": email,
            "status_if_new": self.status_if_new,
            "merge_fields": {k: "" if v is None else v for k, v in merge.items()},
        }
        if self.sync.purpose and row.dest_id is None:
            # new to this sync, consent granted: undo an unsubscribe a withdrawal made earlier
            member["status"] = self.status_if_new
        return member

    def write(self, action: str, rows: list[Row]) -> list[Outcome]:
        if action == "remove":
            return self._remove(rows)
        members = [self._member(r) for r in rows]
        try:
            body = self.client.request(
                "POST",
                f"/3.0/lists/{self.list_id}",
                json={"members": members, "update_existing": True},
            ).json()
        except HttpError as exc:
            if exc.status == 400:
                raise BatchRejected(exc.message) from exc
            raise
        errors = _member_errors(body)
        outcomes = []
        for r, m in zip(rows, members, strict=True):
            email = str(m["email_address"]).strip().lower()
            if email in errors:
                outcomes.append(Outcome(r.key, False, errors[email]))
            else:
                outcomes.append(Outcome(r.key, True, dest_id=email))
        if self.segment_id is not None:
            outcomes = self._tag(outcomes, members)
        return outcomes

    def _tag(self, outcomes: list[Outcome], members: list[dict[str, Any]]) -> list[Outcome]:
        emails = [m["email_address"] for o, m in zip(outcomes, members, strict=True) if o.ok]
        if not emails:
            return outcomes
        body = self.client.request(
            "POST",
            f"/3.0/lists/{self.list_id}/segments/{self.segment_id}",
            json={"members_to_add": emails},
        ).json()
        refused = _segment_errors(body)
        result = []
        for o, m in zip(outcomes, members, strict=True):
            email = str(m["email_address"]).strip().lower()
            result.append(Outcome(o.key, False, refused[email]) if o.ok and email in refused else o)
        return result

    def _remove(self, rows: list[Row]) -> list[Outcome]:
        # the state keeps the address sent (the identity key may be another column)
        emails = [r.dest_id or r.key for r in rows]
        if self.segment_id is not None:
            body = self.client.request(
                "POST",
                f"/3.0/lists/{self.list_id}/segments/{self.segment_id}",
                json={"members_to_remove": emails},
            ).json()
            # "not a list member" on removal means it is already gone: the removal holds
            gone = set(_segment_errors(body))
            outcomes = [Outcome(r.key, True) for r in rows]
            if self.sync.purpose:
                outcomes = self._unsubscribe(rows, emails, gone, outcomes)
            return outcomes
        for email in emails:
            path = f"/3.0/lists/{self.list_id}/members/{subscriber_hash(email)}"
            self.client.request("DELETE", path, ok=(404,))
        return [Outcome(r.key, True) for r in rows]

    def _unsubscribe(
        self, rows: list[Row], emails: list[str], gone: set[str], outcomes: list[Outcome]
    ) -> list[Outcome]:
        """Set ``unsubscribed`` the members whose consent was withdrawn or who are suppressed.

        Members Mailchimp just said are not on the list are left alone: the batch endpoint
        would create them, and a forgotten person must not come back.
        """
        withdrawn = [
            (r, e)
            for r, e in zip(rows, emails, strict=True)
            if r.reason and e.strip().lower() not in gone
        ]
        if not withdrawn:
            return outcomes
        members = [{"email_address": e, "status": "unsubscribed"} for _, e in withdrawn]
        body = self.client.request(
            "POST",
            f"/3.0/lists/{self.list_id}",
            json={"members": members, "update_existing": True},
        ).json()
        errors = _member_errors(body)
        failed = {
            r.key: errors[e.strip().lower()] for r, e in withdrawn if e.strip().lower() in errors
        }
        # a row that failed stays in the state, so the next run unsubscribes it again
        return [Outcome(o.key, False, failed[o.key]) if o.key in failed else o for o in outcomes]
