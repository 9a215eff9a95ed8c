"""Klaviyo profiles and list membership through its JSON:API (``revision`` header).

Upserts go as bulk profile import jobs (``POST /api/profile-bulk-import-jobs``, up to 10,000
profiles, with the sync's list as a relationship so members join it in the same job); the job is
polled until complete and its ``import-errors`` name the refused profiles by their position in
the batch. Mirror mode looks up the leavers' profile ids by email (``filter=any(email,[...])``,
100 at a time) and removes them from the list. All calls share one limiter with both of
Klaviyo's tiers for these endpoints: 10 per second burst and 150 per minute steady.

Consent-gated syncs (a ``purpose``): leaving the list alone would keep a profile whose consent
was withdrawn ``SUBSCRIBED`` to email marketing, reachable by every other campaign. A row removed
because its gate closed (consent withdrawn, or suppressed) is also unsubscribed with a bulk
unsubscribe job (``POST /api/profile-subscription-bulk-delete-jobs``), for profiles Klaviyo
has (a forgotten person is not re-created); a member who merely left the segment keeps the
subscription. A row the sync sends anew (no ``dest_id``) is subscribed with a bulk subscribe job
(``POST /api/profile-subscription-bulk-create-jobs``, ``custom_source: composable-cdp``), so a
customer who gives consent again is subscribed again. Klaviyo records both with method ``API``,
and the consent ledger never reads an API subscription back as a grant: the sync's own echo
cannot become consent. Both jobs take at most 1,000 profiles.

Field mapping: Klaviyo's profile attributes (``email``, ``first_name``, ``phone_number``, ...) by
name, anything else becomes a custom property. Bulk import ignores nulls, so a value cleared in
the warehouse stays in Klaviyo until overwritten.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, ClassVar

from reverse_etl import settings
from reverse_etl.config import SyncConfig, SyncConfigError
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

DEFAULT_BASE_URL = "https://a.klaviyo.com"
REVISION = "2024-10-15"
ATTRIBUTES = {
    "email",
    "phone_number",
    "external_id",
    "first_name",
    "last_name",
    "organization",
    "title",
}
LOOKUP_PAGE = 100
RELATIONSHIP_LIMIT = 1000
SUBSCRIPTION_LIMIT = 1000
CUSTOM_SOURCE = "composable-cdp"  # the consent ledger knows subscriptions it made by this
POINTER = re.compile(r"/data/attributes/profiles/data/(\d+)")


@register
class KlaviyoDestination(HttpDestination):
    kind: ClassVar[str] = "klaviyo"
    max_batch_size: ClassVar[int] = 10_000
    modes: ClassVar[frozenset[str]] = frozenset({"upsert", "mirror"})
    default_rate_limit: ClassVar[Any] = [(10, 1.0), (150, 60.0)]

    def __init__(self, sync: SyncConfig, client) -> None:
        super().__init__(sync, client)
        self.list_name: str | None = sync.options.get("list_name")
        if sync.mode == "mirror" and not self.list_name:
            raise SyncConfigError(f"sync {sync.name!r}: mirror to Klaviyo needs options.list_name")
        self.poll_interval = float(sync.options.get("poll_interval", 1.0))
        self.poll_timeout = float(sync.options.get("poll_timeout", 600))
        self.list_id: str | None = None

    @classmethod
    def from_config(cls, sync: SyncConfig) -> KlaviyoDestination:
        key = settings.env("KLAVIYO_API_KEY")
        if not key:
            raise MissingCredentials("set KLAVIYO_API_KEY to sync to Klaviyo")
        base_url = settings.env("KLAVIYO_BASE_URL") or DEFAULT_BASE_URL
        headers = {
            "Authorization": f"Klaviyo-API-Key {key}",
            "revision": sync.options.get("revision", REVISION),
            "accept": "application/vnd.api+json",
        }
        dest = cls(sync, cls.make_client(sync, base_url, key, headers=headers))
        dest.check_mode()
        return dest

    @classmethod
    def calls_per_batch(cls, action: str, sync: SyncConfig) -> int:
        size = min(sync.batch_size or cls.max_batch_size, cls.max_batch_size)
        subscriptions = -(-size // SUBSCRIPTION_LIMIT) if sync.purpose else 0
        if action == "remove":
            size = min(sync.batch_size or RELATIONSHIP_LIMIT, RELATIONSHIP_LIMIT)
            return -(-size // LOOKUP_PAGE) + 1 + (1 if sync.purpose else 0)
        # create the job and poll it (once when quick); failures add an errors read
        return 2 + subscriptions

    def open(self) -> None:
        if not self.list_name:
            return
        flt = f"equals(name,{json.dumps(self.list_name)})"
        found = self.client.request("GET", "/api/lists", params={"filter": flt}).json()["data"]
        if found:
            self.list_id = found[0]["id"]
            return
        body = {"data": {"type": "list", "attributes": {"name": self.list_name}}}
        self.list_id = self.client.request("POST", "/api/lists", json=body).json()["data"]["id"]

    def _profile(self, row: Row) -> dict[str, Any]:
        attrs: dict[str, Any] = {"email": row.fields.get("email", row.key)}
        props = {}
        for k, v in row.fields.items():
            (attrs if k in ATTRIBUTES else props)[k] = jsonable(v)
        if props:
            attrs["properties"] = props
        return {"type": "profile", "attributes": attrs}

    def write(self, action: str, rows: list[Row]) -> list[Outcome]:
        if action == "remove":
            return self._remove(rows)
        job: dict[str, Any] = {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": [self._profile(r) for r in rows]}},
        }
        if self.list_id:
            job["relationships"] = {"lists": {"data": [{"type": "list", "id": self.list_id}]}}
        try:
            created = self.client.request(
                "POST", "/api/profile-bulk-import-jobs", json={"data": job}
            ).json()["data"]
        except HttpError as exc:
            if exc.status == 400:
                raise BatchRejected(exc.message) from exc
            raise
        status = self._wait(created["id"])
        if status["status"] != "complete":
            return [Outcome(r.key, False, f"import job {status['status']}") for r in rows]
        failed = self._errors(created["id"]) if status.get("failed_count") else {}
        outcomes = [
            Outcome(r.key, False, failed[i])
            if i in failed
            else Outcome(r.key, True, dest_id=str(r.fields.get("email", r.key)).lower())
            for i, r in enumerate(rows)
        ]
        if self.sync.purpose:
            outcomes = self._subscribe(rows, outcomes)
        return outcomes

    def _subscription_job(self, kind: str, consent: str, emails: list[str], **attrs) -> None:
        for i in range(0, len(emails), SUBSCRIPTION_LIMIT):
            profiles = [
                {
                    "type": "profile",
                    "attributes": {
                        "email": e,
                        "subscriptions": {"email": {"marketing": {"consent": consent}}},
                    },
                }
                for e in emails[i : i + SUBSCRIPTION_LIMIT]
            ]
            body = {"type": kind, "attributes": {**attrs, "profiles": {"data": profiles}}}
            self.client.request("POST", f"/api/{kind}s", json={"data": body})

    def _subscribe(self, rows: list[Row], outcomes: list[Outcome]) -> list[Outcome]:
        """Subscribe the rows new to this consent-gated sync (consent granted, maybe again)."""
        new = {
            o.key: o.dest_id for r, o in zip(rows, outcomes, strict=True) if o.ok and not r.dest_id
        }
        if not new:
            return outcomes
        try:
            self._subscription_job(
                "profile-subscription-bulk-create-job",
                "SUBSCRIBED",
                list(new.values()),
                custom_source=CUSTOM_SOURCE,
            )
        except HttpError as exc:
            # not subscribed: the rows fail and stay out of the state, so the next run retries
            return [Outcome(o.key, False, exc.message) if o.key in new else o for o in outcomes]
        return outcomes

    def _wait(self, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.poll_timeout
        while True:
            attrs = self.client.request("GET", f"/api/profile-bulk-import-jobs/{job_id}").json()[
                "data"
            ]["attributes"]
            if attrs["status"] in ("complete", "cancelled") or time.monotonic() > deadline:
                return attrs
            time.sleep(self.poll_interval)

    def _errors(self, job_id: str) -> dict[int, str]:
        """Position in the batch -> Klaviyo's message, from the job's import errors."""
        out: dict[int, str] = {}
        url: str | None = f"/api/profile-bulk-import-jobs/{job_id}/import-errors"
        params: dict[str, Any] | None = {"page[size]": 100}
        while url:
            page = self.client.request("GET", url, params=params).json()
            for error in page.get("data", []):
                attrs = error.get("attributes") or {}
                match = POINTER.search((attrs.get("source") or {}).get("pointer", ""))
                if match:
                    out[int(match.group(1))] = str(attrs.get("detail") or attrs.get("title"))
            url, params = (page.get("links") or {}).get("next"), None
        return out

    def _remove(self, rows: list[Row]) -> list[Outcome]:
        emails = [r.dest_id or r.key for r in rows]
        found: dict[str, str] = {}  # lower-cased email -> profile id
        for i in range(0, len(emails), LOOKUP_PAGE):
            chunk = emails[i : i + LOOKUP_PAGE]
            params = {"filter": f"any(email,{json.dumps(chunk)})", "page[size]": LOOKUP_PAGE}
            for p in self.client.request("GET", "/api/profiles", params=params).json()["data"]:
                found[str(p["attributes"].get("email", "")).strip().lower()] = p["id"]
        ids = list(found.values())
        for i in range(0, len(ids), RELATIONSHIP_LIMIT):
            data = [{"type": "profile", "id": pid} for pid in ids[i : i + RELATIONSHIP_LIMIT]]
            self.client.request(
                "DELETE", f"/api/lists/{self.list_id}/relationships/profiles", json={"data": data}
            )
        # a profile Klaviyo no longer has is in no list: the removal holds
        outcomes = [Outcome(r.key, True) for r in rows]
        withdrawn = {
            r.key: e.strip().lower()
            for r, e in zip(rows, emails, strict=True)
            if self.sync.purpose and r.reason and e.strip().lower() in found
        }
        if withdrawn:
            try:
                self._subscription_job(
                    "profile-subscription-bulk-delete-job",
                    "UNSUBSCRIBED",
                    list(withdrawn.values()),
                )
            except HttpError as exc:
                # a row that failed stays in the state, so the next run unsubscribes it again
                return [
                    Outcome(o.key, False, exc.message) if o.key in withdrawn else o
                    for o in outcomes
                ]
        return outcomes
