"""Deletion requests to the tools the CDP sends people to: HubSpot, Mailchimp, Klaviyo.

Each vendor has a documented way to erase a person, and each is called with every identifier
the person is known by there: HubSpot's GDPR delete per contact id and per email (an email it
does not hold is blocklisted, so a later sync cannot recreate the contact), Mailchimp's
delete-permanent per email in every audience of the account, Klaviyo's data-privacy deletion
job per email, phone and profile id. A vendor whose credentials are absent is skipped and the
receipt says so. Responses go to the audit with every identifier redacted.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from reverse_etl import http
from reverse_etl.settings import env

log = logging.getLogger(__name__)

KLAVIYO_REVISION = "2024-10-15"


@dataclass
class PersonRefs:
    """What a destination may know a person by (raw values: kept in memory only)."""

    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    dest_ids: dict[str, list[str]] = field(default_factory=dict)  # destination -> record ids
    ids: dict[str, list[str]] = field(default_factory=dict)  # id type -> values

    def secrets(self) -> list[str]:
        values = [*self.emails, *self.phones]
        values += [v for vs in self.dest_ids.values() for v in vs]
        values += [v for vs in self.ids.values() for v in vs]
        return sorted({v for v in values if v}, key=len, reverse=True)


@dataclass
class DestinationResult:
    destination: str
    action: str
    ref: str  # which identifier, as "type:sha256"
    ok: bool
    status: int | None
    response: str
    skipped: bool = False


def redact(text: str, secrets: list[str]) -> str:
    """Body text with every raw identifier (in any case) replaced, cut to a readable length."""
    for secret in secrets:
        text = re.sub(re.escape(secret), "[redacted]", text, flags=re.IGNORECASE)
    # md5 hashes of emails (Mailchimp ids) are identifiers too
    text = re.sub(r"\b[0-9a-f]{32}\b", "[redacted-hash]", text)
    return text[:300]


def _ref(id_type: str, value: str) -> str:
    return f"{id_type}:{hashlib.sha256(value.encode()).hexdigest()}"


class Eraser(Protocol):
    name: ClassVar[str]

    def erase(self, person: PersonRefs) -> list[DestinationResult]: ...


class _HttpEraser:
    """Shared plumbing: one client per vendor account, outcome recording, redaction."""

    name: ClassVar[str] = ""

    def __init__(self, client: http.Client) -> None:
        self.client = client

    def _call(
        self,
        person: PersonRefs,
        action: str,
        ref: str,
        method: str,
        path: str,
        *,
        json: object = None,
        absent: tuple[int, ...] = (404,),
    ) -> DestinationResult:
        """One deletion call; ``absent`` statuses mean the vendor does not hold it (fine)."""
        try:
            response = self.client.request(method, path, json=json, ok=absent)
        except http.HttpError as exc:
            body = redact(f"{exc.message}", person.secrets())
            return DestinationResult(self.name, action, ref, False, exc.status, body)
        status = response.status_code
        text = response.text or ""
        note = "not held" if status in absent else "deleted"
        body = redact(f"{note}: {text}" if text else note, person.secrets())
        return DestinationResult(self.name, action, ref, True, status, body)


class HubSpotEraser(_HttpEraser):
    name = "hubspot"

    @classmethod
    def from_env(cls) -> HubSpotEraser | None:
        token = env("HUBSPOT_ACCESS_TOKEN")
        if not token:
            return None
        base = env("HUBSPOT_BASE_URL") or "https://api.hubapi.com"
        headers = {"Authorization": f"Bearer {token}"}
        return cls(http.Client(base, headers=headers, max_attempts=5))

    def erase(self, person: PersonRefs) -> list[DestinationResult]:
        results = []
        ids = sorted(
            {*person.ids.get("hubspot_contact_id", []), *person.dest_ids.get("hubspot", [])}
        )
        for contact_id in ids:
            results.append(
                self._call(
                    person,
                    "gdpr-delete contact",
                    _ref("hubspot_contact_id", contact_id),
                    "POST",
                    "/crm/v3/objects/contacts/gdpr-delete",
                    json={"objectId": contact_id},
                )
            )
        for email in person.emails:
            results.append(
                self._call(
                    person,
                    "gdpr-delete by email",
                    _ref("email", email),
                    "POST",
                    "/crm/v3/objects/contacts/gdpr-delete",
                    json={"objectId": email, "idProperty": "email"},
                )
            )
        return results


class MailchimpEraser(_HttpEraser):
    name = "mailchimp"

    @classmethod
    def from_env(cls) -> MailchimpEraser | None:
        key = env("MAILCHIMP_API_KEY")
        if not key:
            return None
        base = env("MAILCHIMP_BASE_URL")
        if not base:
            dc = key.rsplit("-", 1)[-1] if "-" in key else "us1"
            base = f"https://{dc}.api.mailchimp.com"
        return cls(http.Client(base, auth=("cdp", key), max_attempts=5))

    def lists(self) -> list[str]:
        ids, offset = [], 0
        while True:
            page = self.client.request(
                "GET",
                "/3.0/lists",
                params={"count": 1000, "offset": offset, "fields": "lists.id,total_items"},
            ).json()
            batch = [item["id"] for item in page.get("lists", [])]
            ids += batch
            offset += len(batch)
            if not batch or offset >= int(page.get("total_items", 0)):
                return ids

    def erase(self, person: PersonRefs) -> list[DestinationResult]:
        if not person.emails:
            return []
        try:
            lists = self.lists()
        except http.HttpError as exc:
            msg = redact(exc.message, person.secrets())
            return [DestinationResult(self.name, "list audiences", "", False, exc.status, msg)]
        results = []
        for list_id in lists:
            for email in person.emails:
                subscriber = hashlib.md5(email.lower().encode()).hexdigest()  # noqa: S324
                results.append(
                    self._call(
                        person,
                        f"delete-permanent in audience {list_id}",
                        _ref("email", email),
                        "POST",
                        f"/3.0/lists/{list_id}/members/{subscriber}/actions/delete-permanent",
                    )
                )
        return results


class KlaviyoEraser(_HttpEraser):
    name = "klaviyo"

    @classmethod
    def from_env(cls) -> KlaviyoEraser | None:
        key = env("KLAVIYO_API_KEY")
        if not key:
            return None
        base = env("KLAVIYO_BASE_URL") or "https://a.klaviyo.com"
        headers = {
            "Authorization": f"Klaviyo-API-Key {key}",
            "revision": KLAVIYO_REVISION,
            "accept": "application/vnd.api+json",
            "content-type": "application/vnd.api+json",
        }
        return cls(http.Client(base, headers=headers, max_attempts=5))

    def erase(self, person: PersonRefs) -> list[DestinationResult]:
        jobs = [("email", e, "email") for e in person.emails]
        jobs += [("phone_number", p, "phone") for p in person.phones]
        jobs += [("id", i, "klaviyo_profile_id") for i in person.dest_ids.get("klaviyo", [])]
        results = []
        for attribute, value, id_type in jobs:
            body = {
                "data": {
                    "type": "data-privacy-deletion-job",
                    "attributes": {
                        "profile": {"data": {"type": "profile", "attributes": {attribute: value}}}
                    },
                }
            }
            results.append(
                self._call(
                    person,
                    f"deletion job by {attribute}",
                    _ref(id_type, value),
                    "POST",
                    "/api/data-privacy-deletion-jobs",
                    json=body,
                )
            )
        return results


ERASERS: tuple[type, ...] = (HubSpotEraser, MailchimpEraser, KlaviyoEraser)


def configured_erasers() -> tuple[list[Eraser], list[str]]:
    """Erasers whose credentials are set, and the names of those skipped for lack of them."""
    ready, skipped = [], []
    for cls in ERASERS:
        eraser = cls.from_env()
        if eraser is None:
            skipped.append(cls.name)
        else:
            ready.append(eraser)
    return ready, skipped
