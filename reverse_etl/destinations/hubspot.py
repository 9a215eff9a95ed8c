"""HubSpot contacts (batch upsert by email) and static list membership (v3 lists API).

Upserts go 100 at a time to ``/crm/v3/objects/contacts/batch/upsert`` with ``idProperty=email``;
a 207 multi-status answer names the rows that failed, the others are written. When the sync
names a list (``options.list_name``), it is found or created (MANUAL) once per run, and the
upserted contacts' ids are added to it; mirror mode removes leavers from the list, or archives
them (``options.remove: archive``). The contact id is kept in ``sync_state.dest_id``, which is
what list removal and archive need. Mapped properties HubSpot lacks are created (as text) first.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from reverse_etl import settings
from reverse_etl.config import SyncConfig, SyncConfigError
from reverse_etl.destinations.base import (
    BatchRejected,
    HttpDestination,
    MissingCredentials,
    Outcome,
    Row,
    as_text,
    register,
)
from reverse_etl.http import HttpError

DEFAULT_BASE_URL = "https://api.hubapi.com"


def _error_keys(error: dict[str, Any]) -> list[str]:
    context = error.get("context") or {}
    keys = context.get("ids") or context.get("id") or []
    return [str(k) for k in (keys if isinstance(keys, list) else [keys])]


@register
class HubSpotDestination(HttpDestination):
    kind: ClassVar[str] = "hubspot"
    max_concurrency: ClassVar[int] = 10
    max_batch_size: ClassVar[int] = 100
    modes: ClassVar[frozenset[str]] = frozenset({"upsert", "update", "mirror"})
    default_rate_limit: ClassVar[tuple[int, float] | None] = (100, 10.0)  # private app, 10 s

    def __init__(self, sync: SyncConfig, client) -> None:
        super().__init__(sync, client)
        self.list_name: str | None = sync.options.get("list_name")
        self.remove_action = sync.options.get("remove", "list" if self.list_name else "archive")
        if self.remove_action not in ("list", "archive"):
            raise SyncConfigError(f"sync {sync.name!r}: options.remove is 'list' or 'archive'")
        if self.remove_action == "list" and not self.list_name:
            raise SyncConfigError(f"sync {sync.name!r}: removing from a list needs list_name")
        self.list_id: str | None = None

    @classmethod
    def from_config(cls, sync: SyncConfig) -> HubSpotDestination:
        token = settings.env("HUBSPOT_ACCESS_TOKEN")
        if not token:
            raise MissingCredentials("set HUBSPOT_ACCESS_TOKEN to sync to HubSpot")
        base_url = settings.env("HUBSPOT_BASE_URL") or DEFAULT_BASE_URL
        client = cls.make_client(
            sync, base_url, token, headers={"Authorization": f"Bearer {token}"}
        )
        dest = cls(sync, client)
        dest.check_mode()
        return dest

    @classmethod
    def calls_per_batch(cls, action: str, sync: SyncConfig) -> int:
        has_list = bool(sync.options.get("list_name"))
        if action == "remove":
            archive = sync.options.get("remove", "list" if has_list else "archive") == "archive"
            return min(sync.batch_size or cls.max_batch_size, cls.max_batch_size) if archive else 1
        return 2 if has_list else 1

    def open(self) -> None:
        self._ensure_properties()
        if not self.list_name:
            return
        name = quote(self.list_name, safe="")
        response = self.client.request(
            "GET", f"/crm/v3/lists/object-type-id/0-1/name/{name}", ok=(404,)
        )
        if response.status_code == 404:
            body = {"name": self.list_name, "objectTypeId": "0-1", "processingType": "MANUAL"}
            response = self.client.request("POST", "/crm/v3/lists", json=body, ok=(400, 409))
            if response.status_code in (400, 409):  # created meanwhile by another process
                response = self.client.request(
                    "GET", f"/crm/v3/lists/object-type-id/0-1/name/{name}"
                )
        self.list_id = str(response.json()["list"]["listId"])

    def _ensure_properties(self) -> None:
        """Create the mapped properties HubSpot lacks (custom ones such as cdp_lifetime_value).

        HubSpot refuses a whole batch that writes a property it does not know; creating them
        once, as text in the contact information group, is what an admin would otherwise do.
        """
        known = {
            p["name"]
            for p in self.client.request("GET", "/crm/v3/properties/contacts")
            .json()
            .get("results", [])
        }
        for name in sorted(set(self.sync.fields) - known):
            label = self.sync.options.get("property_labels", {}).get(name) or name.replace("_", " ")
            self.client.request(
                "POST",
                "/crm/v3/properties/contacts",
                json={
                    "name": name,
                    "label": label,
                    "type": "string",
                    "fieldType": "text",
                    "groupName": "contactinformation",
                },
                ok=(409,),  # created meanwhile by another sync
            )

    def write(self, action: str, rows: list[Row]) -> list[Outcome]:
        if action == "remove":
            return self._remove(rows)
        endpoint = "upsert" if action == "upsert" else "update"
        inputs = [
            {
                "idProperty": "email",
                "id": r.key,
                "properties": {k: as_text(v) for k, v in r.fields.items()},
            }
            for r in rows
        ]
        try:
            response = self.client.request(
                "POST", f"/crm/v3/objects/contacts/batch/{endpoint}", json={"inputs": inputs}
            )
        except HttpError as exc:
            if exc.status == 400:
                raise BatchRejected(exc.message) from exc
            raise
        body = response.json()
        ids = {
            str(r["properties"].get("email", "")).lower(): str(r["id"])
            for r in body.get("results", [])
        }
        errors = {
            k.lower(): e.get("message", "") for e in body.get("errors", []) for k in _error_keys(e)
        }
        outcomes = []
        for r in rows:
            key = r.key.strip().lower()
            if key in ids:
                outcomes.append(Outcome(r.key, True, dest_id=ids[key]))
            else:
                outcomes.append(Outcome(r.key, False, errors.get(key, "not in HubSpot's answer")))
        if self.list_id:
            outcomes = self._add_to_list(outcomes)
        return outcomes

    def _add_to_list(self, outcomes: list[Outcome]) -> list[Outcome]:
        ids = [o.dest_id for o in outcomes if o.ok]
        if not ids:
            return outcomes
        response = self.client.request(
            "PUT", f"/crm/v3/lists/{self.list_id}/memberships/add", json=ids
        )
        missing = set(map(str, response.json().get("recordIdsMissing") or []))
        return [
            Outcome(o.key, False, f"contact {o.dest_id} missing when added to the list")
            if o.ok and o.dest_id in missing
            else o
            for o in outcomes
        ]

    def _ids_by_email(self, emails: list[str]) -> dict[str, str]:
        """Contact ids of rows whose id we never learned (a run died before recording it)."""
        if not emails:
            return {}
        body = self.client.request(
            "POST",
            "/crm/v3/objects/contacts/batch/read",
            json={
                "idProperty": "email",
                "inputs": [{"id": e} for e in emails],
                "properties": ["email"],
            },
        ).json()
        return {
            str(r["properties"].get("email", "")).lower(): str(r["id"])
            for r in body.get("results", [])
        }

    def _remove(self, rows: list[Row]) -> list[Outcome]:
        found = self._ids_by_email([r.key for r in rows if not r.dest_id])
        for r in rows:
            r.dest_id = r.dest_id or found.get(r.key.strip().lower())
        known = [r for r in rows if r.dest_id]
        if self.remove_action == "list":
            if known:
                self.client.request(
                    "PUT",
                    f"/crm/v3/lists/{self.list_id}/memberships/remove",
                    json=[r.dest_id for r in known],
                )
            # a record HubSpot reports missing is not in the list either: removal holds
            return [Outcome(r.key, True) for r in rows]
        for r in known:
            self.client.request("DELETE", f"/crm/v3/objects/contacts/{r.dest_id}", ok=(404,))
        return [Outcome(r.key, True) for r in rows]
