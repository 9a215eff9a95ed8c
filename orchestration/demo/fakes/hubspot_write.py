"""HubSpot's write APIs as a mixin for the HubSpot fake: batch upsert/update, v3 lists, archive.

Composed onto the read-side fake (``hubspot_fake_class()``), it works on the same
``self.contacts`` (id -> ``{"id", "properties", "createdAt", "updatedAt", "archived"}``), so what
a sync writes is what an ingest reads back. Shapes follow HubSpot's v3 docs:

- ``POST /crm/v3/objects/contacts/batch/upsert`` and ``.../batch/update``: at most 100 inputs;
  rows that fail validation come back in ``errors`` with status 207 (multi-status) while the
  others are written;
- ``GET /crm/v3/lists/object-type-id/0-1/name/{name}``, ``POST /crm/v3/lists`` (MANUAL lists),
  ``PUT /crm/v3/lists/{listId}/memberships/add|remove`` (record ids; missing ones are reported);
- a property must exist before it is written (400 ``PROPERTY_DOESNT_EXIST`` for the batch):
  ``GET|POST /crm/v3/properties/contacts``;
- ``POST /crm/v3/objects/contacts/batch/read`` (by id or ``idProperty=email``);
- ``DELETE /crm/v3/objects/contacts/{id}`` archives the contact (204);
  ``POST /crm/v3/objects/contacts/gdpr-delete`` deletes it for good (by id or email).

``write_log`` records (time, operation, email) of every row write, for tests that check a row
was not sent again after its batch was acknowledged.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from typing import Any
from urllib.parse import unquote

from orchestration.demo.fakes.base import Request, Response, route

BATCH_LIMIT = 100
MEMBERSHIP_LIMIT = 100_000
CONTACTS_OBJECT_TYPE = "0-1"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# a portal's default contact properties (a subset); others must be created before use
DEFAULT_PROPERTIES = (
    "email firstname lastname phone mobilephone company jobtitle website address city state zip "
    "country lifecyclestage hs_lead_status hs_email_optout hs_object_id createdate "
    "lastmodifieddate"
).split()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(status: int, message: str, category: str = "VALIDATION_ERROR") -> Response:
    return Response(
        status,
        {
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": category,
        },
    )


class HubSpotWriteMixin:
    """Write routes; the class it is mixed into provides ``contacts`` (and FakeServer)."""

    contacts: dict[str, dict[str, Any]]

    def __init__(self, *args: Any, latency: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latency = latency  # seconds each request takes, like a network round trip
        if not hasattr(self, "contacts"):
            self.contacts = {}
        self.properties: dict[str, dict[str, Any]] = {
            name: {
                "name": name,
                "label": name,
                "type": "string",
                "fieldType": "text",
                "groupName": "contactinformation",
                "hubspotDefined": True,
            }
            for name in DEFAULT_PROPERTIES
        }
        self.lists: dict[str, dict[str, Any]] = {}
        self.list_members: dict[str, set[str]] = {}
        self.write_log: list[tuple[float, str, str]] = []
        self._next_list_id = 1000

    def dispatch(self, request: Request) -> Response:
        if self.latency:
            time.sleep(self.latency)  # outside the server's lock: concurrent requests overlap
        return super().dispatch(request)

    # -- helpers tests use -------------------------------------------------------------------
    def contact_by_email(self, email: str) -> dict[str, Any] | None:
        """The live contact with that email; an index rebuilt when contacts were added elsewhere."""
        wanted = email.strip().lower()
        if getattr(self, "_indexed", -1) != len(self.contacts):
            self._email_index = {
                c["properties"].get("email"): i
                for i, c in self.contacts.items()
                if not c.get("archived")
            }
            self._indexed = len(self.contacts)
            self._max_id = max((int(i) for i in self.contacts if str(i).isdigit()), default=0)
        contact = self.contacts.get(self._email_index.get(wanted, ""))
        if contact and not contact.get("archived") and contact["properties"].get("email") == wanted:
            return contact
        return None

    def list_by_name(self, name: str) -> dict[str, Any] | None:
        return next((lst for lst in self.lists.values() if lst["name"] == name), None)

    def list_contacts(self, name: str) -> dict[str, dict[str, Any]]:
        """email -> properties of the live contacts in the named list."""
        lst = self.list_by_name(name)
        if lst is None:
            return {}
        members = (self.contacts.get(i) for i in self.list_members[lst["listId"]])
        return {
            c["properties"]["email"]: c["properties"]
            for c in members
            if c is not None and not c.get("archived")
        }

    def _new_contact_id(self) -> str:
        """Called right after a lookup, so ``_max_id`` is current."""
        self._max_id += 1
        return str(self._max_id)

    # -- contacts ----------------------------------------------------------------------------
    def _batch_write(self, request: Request, create: bool) -> Response:
        body = request.json() or {}
        inputs = body.get("inputs")
        if not isinstance(inputs, list):
            return _error(400, "Invalid input JSON: inputs is required")
        if len(inputs) > BATCH_LIMIT:
            return _error(400, f"Batch input limit exceeded: {len(inputs)} > {BATCH_LIMIT}")
        unknown = sorted(
            {k for item in inputs for k in (item.get("properties") or {})} - set(self.properties)
        )
        if unknown:
            return _error(
                400,
                "Property values were not valid: "
                + ", ".join(
                    f'{{"isValid":false,"message":"Property \\"{k}\\" does not exist",'
                    f'"error":"PROPERTY_DOESNT_EXIST","name":"{k}"}}'
                    for k in unknown
                ),
            )
        started, results, errors = _now(), [], []
        for item in inputs:
            id_property = item.get("idProperty")
            key = str(item.get("id") or "")
            props = {
                k: "" if v is None else str(v) for k, v in (item.get("properties") or {}).items()
            }
            if id_property != "email":
                errors.append(self._row_error(key, f"Unsupported idProperty {id_property!r}"))
                continue
            email = key.strip().lower()
            if not EMAIL.match(email):
                errors.append(
                    self._row_error(
                        key,
                        f'Property values were not valid: [{{"isValid":false,"message":"Email '
                        f'address {key} is invalid","error":"INVALID_EMAIL","name":"email"}}]',
                    )
                )
                continue
            contact = self.contact_by_email(email)
            if contact is None and not create:
                errors.append(
                    self._row_error(key, f"Object not found. email={key}", "OBJECT_NOT_FOUND")
                )
                continue
            now = _now()
            is_new = contact is None
            if is_new:
                contact = {
                    "id": self._new_contact_id(),
                    "properties": {},
                    "createdAt": now,
                    "updatedAt": now,
                    "archived": False,
                }
                self.contacts[contact["id"]] = contact
                self._email_index[email] = contact["id"]
                self._indexed = len(self.contacts)
            contact["properties"].update({**props, "email": email})
            contact["properties"]["hs_object_id"] = contact["id"]
            contact["updatedAt"] = now
            self.write_log.append((time.time(), "upsert" if create else "update", email))
            results.append({**contact, "properties": dict(contact["properties"]), "new": is_new})
        answer: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": started,
            "completedAt": _now(),
        }
        if errors:
            answer.update(errors=errors, numErrors=len(errors))
            return Response(207, answer)
        return Response(200, answer)

    @staticmethod
    def _row_error(key: str, message: str, category: str = "VALIDATION_ERROR") -> dict[str, Any]:
        return {
            "status": "error",
            "category": category,
            "message": message,
            "context": {"ids": [key]},
        }

    @route("POST", r"/crm/v3/objects/contacts/batch/upsert")
    def batch_upsert(self, request: Request) -> Response:
        return self._batch_write(request, create=True)

    @route("POST", r"/crm/v3/objects/contacts/batch/update")
    def batch_update(self, request: Request) -> Response:
        return self._batch_write(request, create=False)

    @route("POST", r"/crm/v3/objects/contacts/batch/read")
    def batch_read(self, request: Request) -> Response:
        body = request.json() or {}
        inputs = body.get("inputs") or []
        if len(inputs) > BATCH_LIMIT:
            return _error(400, f"Batch input limit exceeded: {len(inputs)} > {BATCH_LIMIT}")
        if body.get("idProperty") not in (None, "email"):
            return _error(400, f"Unsupported idProperty {body.get('idProperty')!r}")
        wanted = body.get("properties") or ["email"]
        results, errors = [], []
        for item in inputs:
            key = str(item.get("id") or "")
            if body.get("idProperty") == "email":
                contact = self.contact_by_email(key)
            else:
                contact = self.contacts.get(key)
                contact = None if contact is None or contact.get("archived") else contact
            if contact is None:
                errors.append(
                    self._row_error(key, f"Object not found. id={key}", "OBJECT_NOT_FOUND")
                )
                continue
            props = {k: contact["properties"].get(k) for k in wanted}
            results.append({**contact, "properties": props})
        answer = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": _now(),
            "completedAt": _now(),
        }
        if errors:
            answer.update(errors=errors, numErrors=len(errors))
            return Response(207, answer)
        return Response(200, answer)

    @route("DELETE", r"/crm/v3/objects/contacts/(?P<contact_id>\d+)")
    def archive_contact(self, request: Request) -> Response:
        contact = self.contacts.get(request.params["contact_id"])
        if contact is not None and not contact.get("archived"):
            contact["archived"] = True
            contact["archivedAt"] = _now()
            for members in self.list_members.values():
                members.discard(contact["id"])
            self.write_log.append((time.time(), "archive", contact["properties"].get("email", "")))
        return Response(204)

    @route("POST", r"/crm/v3/objects/contacts/gdpr-delete")
    def gdpr_delete(self, request: Request) -> Response:
        """Permanent deletion (privacy requests): the contact and its list memberships go."""
        body = request.json() or {}
        key = str(body.get("objectId") or "")
        if body.get("idProperty") == "email":
            contact = self.contact_by_email(key)
        else:
            contact = self.contacts.get(key)
        if contact is None:
            return _error(404, f"Object not found. objectId={key}", "OBJECT_NOT_FOUND")
        del self.contacts[contact["id"]]
        self._indexed = -1  # the email index is rebuilt on the next lookup
        for members in self.list_members.values():
            members.discard(contact["id"])
        self.write_log.append((time.time(), "gdpr_delete", contact["properties"].get("email", "")))
        return Response(204)

    # -- properties --------------------------------------------------------------------------
    @route("GET", r"/crm/v3/properties/contacts/?")
    def get_properties(self, request: Request) -> Response:
        return Response(200, {"results": list(self.properties.values())})

    @route("POST", r"/crm/v3/properties/contacts/?")
    def create_property(self, request: Request) -> Response:
        body = request.json() or {}
        name = body.get("name")
        missing = [
            f for f in ("name", "label", "type", "fieldType", "groupName") if not body.get(f)
        ]
        if missing:
            return _error(400, f"Missing required fields: {', '.join(missing)}")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            return _error(400, f"Property name {name!r} must be lower-case letters, digits, _")
        if name in self.properties:
            return _error(409, f"Property named '{name}' already exists.", "OBJECT_ALREADY_EXISTS")
        self.properties[name] = {**body, "hubspotDefined": False, "createdAt": _now()}
        return Response(201, self.properties[name])

    # -- lists -------------------------------------------------------------------------------
    @route("GET", r"/crm/v3/lists/object-type-id/(?P<object_type>[^/]+)/name/(?P<name>[^/]+)")
    def get_list_by_name(self, request: Request) -> Response:
        name = unquote(request.params["name"])
        lst = self.list_by_name(name)
        if lst is None or request.params["object_type"] != lst["objectTypeId"]:
            return _error(404, f"List does not exist with name {name}", "OBJECT_NOT_FOUND")
        return Response(200, {"list": self._list_view(lst)})

    @route("POST", r"/crm/v3/lists/?")
    def create_list(self, request: Request) -> Response:
        body = request.json() or {}
        name, processing = body.get("name"), body.get("processingType")
        if not name or body.get("objectTypeId") != CONTACTS_OBJECT_TYPE:
            return _error(400, "name and objectTypeId (0-1 for contacts) are required")
        if processing not in ("MANUAL", "SNAPSHOT", "DYNAMIC"):
            return _error(400, f"Invalid processingType {processing!r}")
        if self.list_by_name(name) is not None:
            return _error(400, f"A list named '{name}' already exists", "VALIDATION_ERROR")
        list_id = str(self._next_list_id)
        self._next_list_id += 1
        self.lists[list_id] = {
            "listId": list_id,
            "name": name,
            "objectTypeId": CONTACTS_OBJECT_TYPE,
            "processingType": processing,
            "createdAt": _now(),
        }
        self.list_members[list_id] = set()
        return Response(200, {"list": self._list_view(self.lists[list_id])})

    def _list_view(self, lst: dict[str, Any]) -> dict[str, Any]:
        return {**lst, "size": len(self.list_members[lst["listId"]])}

    @route("PUT", r"/crm/v3/lists/(?P<list_id>\d+)/memberships/(?P<op>add|remove)")
    def change_memberships(self, request: Request) -> Response:
        lst = self.lists.get(request.params["list_id"])
        if lst is None:
            return _error(404, "List does not exist", "OBJECT_NOT_FOUND")
        if lst["processingType"] != "MANUAL":
            return _error(400, "Memberships of a non-MANUAL list cannot be changed")
        ids = request.json()
        if not isinstance(ids, list):
            return _error(400, "Body must be a JSON array of record ids")
        if len(ids) > MEMBERSHIP_LIMIT:
            return _error(400, f"At most {MEMBERSHIP_LIMIT} record ids per request")
        members = self.list_members[lst["listId"]]
        done, missing = [], []
        for record_id in map(str, ids):
            contact = self.contacts.get(record_id)
            if contact is None or contact.get("archived"):
                missing.append(record_id)
                continue
            done.append(record_id)
            if request.params["op"] == "add":
                members.add(record_id)
            else:
                members.discard(record_id)
            self.write_log.append(
                (time.time(), f"list_{request.params['op']}", contact["properties"]["email"])
            )
        key = "recordIdsAdded" if request.params["op"] == "add" else "recordIdsRemoved"
        return Response(200, {key: done, "recordIdsMissing": missing})


def hubspot_fake_class() -> type:
    """The demo's HubSpot: the read-side fake with these write routes mixed in."""
    from orchestration.demo.fakes.hubspot import HubSpotFake

    return type("HubSpot", (HubSpotWriteMixin, HubSpotFake), {})
