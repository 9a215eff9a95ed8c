"""Mailchimp Marketing API 3.0 fake: audiences, batch subscribe, static segments (tags).

Follows the documented shapes: basic auth with the API key as password; ``POST /3.0/lists/{id}``
batch subscribes at most 500 members and reports per-member ``errors`` beside ``new_members`` and
``updated_members``; ``POST /3.0/lists/{id}/segments/{segment_id}`` adds and removes up to 500
emails per side; errors are problem-detail JSON (``type``, ``title``, ``status``, ``detail``);
more than 10 simultaneous connections get 429, as Mailchimp's documented connection limit.
Members are keyed by the subscriber hash, the MD5 of the lower-cased email.

The read side is what the Mailchimp source connector uses: ``GET /3.0/lists/{id}/members`` with
``count`` (at most 1,000) and ``offset`` paging, ``since_last_changed`` (members changed after
it), ``sort_field``/``sort_dir`` and ``status``. Members carry ``status``, ``source`` (how they
were added: ``API - Generic`` for the batch endpoint, as Mailchimp records API writes),
``timestamp_opt``, ``last_changed`` and ``unsubscribe_reason``; absent timestamps are ``""`` as
Mailchimp sends them. ``from_demo`` fills the demo's newsletter audience from the generator.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import threading
import time
from typing import Any

from orchestration.demo.fakes.base import FakeServer, Request, Response, route
from orchestration.demo.generator import MAILCHIMP_LIST_ID, DemoData

BATCH_LIMIT = 500
CONNECTION_LIMIT = 10
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
STATUSES = {"subscribed", "unsubscribed", "cleaned", "pending", "transactional"}
PAGE_MAX = 1000
API_SOURCE = "API - Generic"
API_UNSUBSCRIBE_REASON = "N/A (Unsubscribed by an admin)"
ERROR_DOC = "https://mailchimp.com/developer/marketing/docs/errors/"


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def _problem(status: int, title: str, detail: str, errors: list | None = None) -> Response:
    body: dict[str, Any] = {
        "type": ERROR_DOC,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": "",
    }
    if errors:
        body["errors"] = errors
    return Response(status, body)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds")


def _now() -> str:
    return _iso(dt.datetime.now(dt.UTC))


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


class MailchimpFake(FakeServer):
    name = "mailchimp"

    def __init__(self, latency: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.latency = latency  # seconds each request takes, like a real network round trip
        self.lists: dict[str, dict[str, Any]] = {}
        self.members: dict[str, dict[str, dict[str, Any]]] = {}  # list id -> hash -> member
        self.segments: dict[str, dict[int, dict[str, Any]]] = {}  # list id -> id -> segment
        self.write_log: list[tuple[float, str, str]] = []
        self.max_concurrent_seen = 0
        self._in_flight = 0
        self._flight_lock = threading.Lock()
        self._next_segment = 1

    @classmethod
    def from_demo(cls, data: DemoData, **kwargs: Any) -> MailchimpFake:
        """The demo's newsletter audience with the generator's members (the source side)."""
        fake = cls(**kwargs)
        fake.add_list("Newsletter", MAILCHIMP_LIST_ID)
        frame = data.source("mailchimp.members")
        for row in frame.iter_rows(named=True):
            merge = {"FNAME": row["fname"] or "", "LNAME": row["lname"] or ""}
            merge["PHONE"] = row["phone"] or ""
            fake.members[MAILCHIMP_LIST_ID][row["id"]] = {
                "id": row["id"],
                "email_address": row["email_address"],
                "unique_email_id": row["id"][:10],
                "status": row["status"],
                "merge_fields": merge,
                "source": row["source"],
                "unsubscribe_reason": row["unsubscribe_reason"] or "",
                "timestamp_signup": "",
                "timestamp_opt": _iso(row["timestamp_opt"]) if row["timestamp_opt"] else "",
                "last_changed": _iso(row["last_changed"]),
            }
        return fake

    # -- helpers tests use -------------------------------------------------------------------
    def add_list(self, name: str, list_id: str | None = None) -> dict[str, Any]:
        list_id = list_id or hashlib.md5(f"{name}{len(self.lists)}".encode()).hexdigest()[:10]
        self.lists[list_id] = {"id": list_id, "name": name, "date_created": _now()}
        self.members[list_id] = {}
        self.segments[list_id] = {}
        return self.lists[list_id]

    def member(self, audience: str, email: str) -> dict[str, Any] | None:
        lst = self.list_by_name(audience)
        return self.members[lst["id"]].get(subscriber_hash(email)) if lst else None

    def person_unsubscribes(
        self, audience: str, email: str, reason: str = "No longer interested", when=None
    ) -> dict[str, Any]:
        """The person clicks "unsubscribe" in an email (what the API cannot tell from a form)."""
        with self._lock:
            member = self.member(audience, email)
            member["status"] = "unsubscribed"
            member["unsubscribe_reason"] = reason
            member["last_changed"] = _iso(when or dt.datetime.now(dt.UTC))
            return member

    def person_subscribes(self, audience: str, email: str, when=None) -> dict[str, Any]:
        """The person signs up through the audience's hosted form."""
        with self._lock:
            lst = self.list_by_name(audience)
            h = subscriber_hash(email)
            stamp = _iso(when or dt.datetime.now(dt.UTC))
            member = self.members[lst["id"]].setdefault(
                h,
                {
                    "id": h,
                    "email_address": email.strip().lower(),
                    "unique_email_id": h[:10],
                    "merge_fields": {},
                    "source": "Hosted Signup Form",
                    "timestamp_signup": stamp,
                },
            )
            member.update(
                status="subscribed", unsubscribe_reason="", timestamp_opt=stamp, last_changed=stamp
            )
            return member

    def list_by_name(self, name: str) -> dict[str, Any] | None:
        return next((lst for lst in self.lists.values() if lst["name"] == name), None)

    def tagged(self, audience: str, tag: str) -> dict[str, dict[str, Any]]:
        """email -> member of the audience's static segment (tag) ``tag``."""
        lst = self.list_by_name(audience)
        if lst is None:
            return {}
        seg = next((s for s in self.segments[lst["id"]].values() if s["name"] == tag), None)
        if seg is None:
            return {}
        members = self.members[lst["id"]]
        return {members[h]["email_address"]: members[h] for h in seg["members"]}

    def audience_members(self, audience: str, status: str = "subscribed") -> dict[str, dict]:
        lst = self.list_by_name(audience)
        members = self.members[lst["id"]].values() if lst else []
        return {m["email_address"]: m for m in members if m["status"] == status}

    # -- behaviours --------------------------------------------------------------------------
    def check_auth(self, request: Request) -> Response | None:
        if self.token is None:
            return None
        header = request.headers.get("authorization", "")
        try:
            _, key = base64.b64decode(header.removeprefix("Basic ")).decode().split(":", 1)
        except ValueError:
            key = None
        if not header.startswith("Basic ") or key != self.token:
            return _problem(
                401,
                "API Key Invalid",
                "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
            )
        return None

    def rate_limited_response(self) -> Response:
        response = _problem(429, "Too Many Requests", "You have exceeded the limit of requests.")
        response.headers["Retry-After"] = str(self.retry_after_seconds)
        return response

    def dispatch(self, request: Request) -> Response:
        with self._flight_lock:
            self._in_flight += 1
            self.max_concurrent_seen = max(self.max_concurrent_seen, self._in_flight)
            crowded = self._in_flight > CONNECTION_LIMIT
        try:
            if crowded:
                return _problem(
                    429,
                    "Too Many Requests",
                    f"You have exceeded the limit of {CONNECTION_LIMIT} simultaneous connections.",
                )
            if self.latency:
                time.sleep(self.latency)
            return super().dispatch(request)
        finally:
            with self._flight_lock:
                self._in_flight -= 1

    def _list(self, request: Request) -> dict[str, Any] | None:
        return self.lists.get(request.params["list_id"])

    def _not_found(self) -> Response:
        return _problem(404, "Resource Not Found", "The requested resource could not be found.")

    # -- audiences ---------------------------------------------------------------------------
    @route("GET", r"/3\.0/lists/?")
    def get_lists(self, request: Request) -> Response:
        count, offset = int(request.arg("count", "10")), int(request.arg("offset", "0"))
        lists = [self._list_view(lst) for lst in self.lists.values()]
        return Response(200, {"lists": lists[offset : offset + count], "total_items": len(lists)})

    @route("POST", r"/3\.0/lists/?")
    def create_list(self, request: Request) -> Response:
        body = request.json() or {}
        required = ["name", "contact", "permission_reminder", "campaign_defaults"]
        missing = [f for f in required if not body.get(f)]
        if "email_type_option" not in body:
            missing.append("email_type_option")
        if missing:
            return _problem(
                400,
                "Invalid Resource",
                "The resource submitted could not be validated.",
                [{"field": f, "message": "This value should not be blank."} for f in missing],
            )
        return Response(200, self._list_view(self.add_list(body["name"])))

    def _list_view(self, lst: dict[str, Any]) -> dict[str, Any]:
        members = self.members[lst["id"]].values()
        count = sum(m["status"] == "subscribed" for m in members)
        return {**lst, "stats": {"member_count": count}}

    def _member_view(self, list_id: str, member: dict[str, Any]) -> dict[str, Any]:
        return {**member, "list_id": list_id, "tags": self._tags_of(list_id, member["id"])}

    def _tags_of(self, list_id: str, member_id: str) -> list[dict[str, Any]]:
        return [
            {"id": s["id"], "name": s["name"]}
            for s in self.segments[list_id].values()
            if member_id in s["members"]
        ]

    @route("POST", r"/3\.0/lists/(?P<list_id>[0-9a-f]+)")
    def batch_subscribe(self, request: Request) -> Response:
        lst = self._list(request)
        if lst is None:
            return self._not_found()
        body = request.json() or {}
        members = body.get("members")
        if not isinstance(members, list):
            return _problem(400, "Invalid Resource", "members is required")
        if len(members) > BATCH_LIMIT:
            return _problem(
                400, "Invalid Resource", f"A maximum of {BATCH_LIMIT} members per batch."
            )
        update_existing = bool(body.get("update_existing"))
        store = self.members[lst["id"]]
        created, updated, errors = [], [], []
        for item in members:
            email = str(item.get("email_address") or "")
            status = item.get("status") or item.get("status_if_new")
            if not EMAIL.match(email.strip()):
                errors.append(
                    {
                        "email_address": email,
                        "error": f"{email} looks fake or invalid, please enter a real email "
                        "address.",
                        "error_code": "ERROR_GENERIC",
                    }
                )
                continue
            if status not in STATUSES:
                errors.append(
                    {
                        "email_address": email,
                        "error": "Invalid status: set status or status_if_new",
                        "error_code": "ERROR_GENERIC",
                    }
                )
                continue
            h = subscriber_hash(email)
            member = store.get(h)
            if member is not None and not update_existing:
                errors.append(
                    {
                        "email_address": email,
                        "error": f"{email} is already a list member, do you want to update? "
                        "please provide update_existing:true in the request body",
                        "error_code": "ERROR_CONTACT_EXISTS",
                    }
                )
                continue
            if member is None:
                member = {
                    "id": h,
                    "email_address": email.strip().lower(),
                    "unique_email_id": h[:10],
                    "status": None,
                    "merge_fields": {},
                    "source": API_SOURCE,
                    "unsubscribe_reason": "",
                    "timestamp_signup": "",
                    "timestamp_opt": "",
                }
                store[h] = member
                created.append(member)
                self._set_status(member, item.get("status_if_new") or status)
            else:
                if item.get("status"):
                    self._set_status(member, item["status"])
                updated.append(member)
            member["merge_fields"].update(item.get("merge_fields") or {})
            member["last_changed"] = _now()
            op = "unsubscribe" if item.get("status") == "unsubscribed" else "subscribe"
            self.write_log.append((time.time(), op, member["email_address"]))
        return Response(
            200,
            {
                "new_members": [self._member_view(lst["id"], m) for m in created],
                "updated_members": [self._member_view(lst["id"], m) for m in updated],
                "errors": errors,
                "total_created": len(created),
                "total_updated": len(updated),
                "error_count": len(errors),
            },
        )

    def _set_status(self, member: dict[str, Any], status: str) -> None:
        """A status written through the API, recorded as Mailchimp records an admin's change."""
        if member["status"] == status:
            return
        member["status"] = status
        if status == "subscribed":
            member["timestamp_opt"] = _now()
            member["unsubscribe_reason"] = ""
        elif status == "unsubscribed":
            member["unsubscribe_reason"] = API_UNSUBSCRIBE_REASON

    @route("GET", r"/3\.0/lists/(?P<list_id>[0-9a-f]+)/members/?")
    def get_members(self, request: Request) -> Response:
        lst = self._list(request)
        if lst is None:
            return self._not_found()
        count = int(request.arg("count", "10"))
        if count > PAGE_MAX:
            return _problem(400, "Invalid Resource", f"count must be at most {PAGE_MAX}")
        offset = int(request.arg("offset", "0"))
        members = list(self.members[lst["id"]].values())
        since = request.arg("since_last_changed")
        if since:
            after = _parse(since)
            members = [m for m in members if _parse(m["last_changed"]) > after]
        status = request.arg("status")
        if status:
            members = [m for m in members if m["status"] == status]
        field = request.arg("sort_field")
        if field:
            members.sort(key=lambda m: (m.get(field) or "", m["id"]))
            if request.arg("sort_dir", "DESC") == "DESC":
                members.reverse()
        page = [self._member_view(lst["id"], m) for m in members[offset : offset + count]]
        return Response(200, {"members": page, "list_id": lst["id"], "total_items": len(members)})

    @route("GET", r"/3\.0/lists/(?P<list_id>[0-9a-f]+)/members/(?P<hash>[0-9a-f]{32})")
    def get_member(self, request: Request) -> Response:
        lst = self._list(request)
        member = self.members[lst["id"]].get(request.params["hash"]) if lst else None
        if member is None:
            return self._not_found()
        return Response(200, self._member_view(lst["id"], member))

    @route("DELETE", r"/3\.0/lists/(?P<list_id>[0-9a-f]+)/members/(?P<hash>[0-9a-f]{32})")
    def archive_member(self, request: Request) -> Response:
        lst = self._list(request)
        member = self.members[lst["id"]].get(request.params["hash"]) if lst else None
        if member is None:
            return self._not_found()
        member["status"] = "archived"
        self.write_log.append((time.time(), "archive", member["email_address"]))
        return Response(204)

    @route(
        "POST",
        r"/3\.0/lists/(?P<list_id>[0-9a-f]+)/members/(?P<hash>[0-9a-f]{32})"
        r"/actions/delete-permanent",
    )
    def delete_permanent(self, request: Request) -> Response:
        lst = self._list(request)
        member = self.members[lst["id"]].pop(request.params["hash"], None) if lst else None
        if member is None:
            return self._not_found()
        for seg in self.segments[lst["id"]].values():
            seg["members"].discard(member["id"])
        return Response(204)

    # -- static segments (tags) --------------------------------------------------------------
    @route("GET", r"/3\.0/lists/(?P<list_id>[0-9a-f]+)/segments/?")
    def get_segments(self, request: Request) -> Response:
        lst = self._list(request)
        if lst is None:
            return self._not_found()
        kind = request.arg("type")
        segments = [
            self._segment_view(s)
            for s in self.segments[lst["id"]].values()
            if kind is None or s["type"] == kind
        ]
        count, offset = int(request.arg("count", "10")), int(request.arg("offset", "0"))
        return Response(
            200,
            {"segments": segments[offset : offset + count], "total_items": len(segments)},
        )

    def _segment_view(self, seg: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in seg.items() if k != "members"}
        return {**view, "member_count": len(seg["members"])}

    @route("POST", r"/3\.0/lists/(?P<list_id>[0-9a-f]+)/segments/?")
    def create_segment(self, request: Request) -> Response:
        lst = self._list(request)
        if lst is None:
            return self._not_found()
        body = request.json() or {}
        if not body.get("name") or "static_segment" not in body:
            return _problem(400, "Invalid Resource", "name and static_segment are required")
        if any(s["name"] == body["name"] for s in self.segments[lst["id"]].values()):
            return _problem(400, "Invalid Resource", "A segment with this name already exists")
        seg_id = self._next_segment
        self._next_segment += 1
        store = self.members[lst["id"]]
        members = {subscriber_hash(e) for e in body["static_segment"]} & set(store)
        self.segments[lst["id"]][seg_id] = {
            "id": seg_id,
            "name": body["name"],
            "type": "static",
            "list_id": lst["id"],
            "created_at": _now(),
            "members": members,
        }
        return Response(200, self._segment_view(self.segments[lst["id"]][seg_id]))

    @route("POST", r"/3\.0/lists/(?P<list_id>[0-9a-f]+)/segments/(?P<segment_id>\d+)")
    def change_segment(self, request: Request) -> Response:
        lst = self._list(request)
        seg = self.segments[lst["id"]].get(int(request.params["segment_id"])) if lst else None
        if seg is None:
            return self._not_found()
        body = request.json() or {}
        to_add = body.get("members_to_add") or []
        to_remove = body.get("members_to_remove") or []
        if len(to_add) > BATCH_LIMIT or len(to_remove) > BATCH_LIMIT:
            return _problem(400, "Invalid Resource", f"A maximum of {BATCH_LIMIT} emails per side.")
        store = self.members[lst["id"]]
        added, removed, not_members = [], [], []
        for email in to_add:
            member = store.get(subscriber_hash(email))
            if member is None or member["status"] == "archived":
                not_members.append(email)
                continue
            seg["members"].add(member["id"])
            added.append(self._member_view(lst["id"], member))
            self.write_log.append((time.time(), "tag", member["email_address"]))
        for email in to_remove:
            member = store.get(subscriber_hash(email))
            if member is None:
                not_members.append(email)
                continue
            seg["members"].discard(member["id"])
            removed.append(self._member_view(lst["id"], member))
            self.write_log.append((time.time(), "untag", member["email_address"]))
        errors = (
            [{"email_addresses": not_members, "error": "Email addresses are not list members"}]
            if not_members
            else []
        )
        return Response(
            200,
            {
                "members_added": added,
                "members_removed": removed,
                "errors": errors,
                "total_added": len(added),
                "total_removed": len(removed),
                "error_count": len(not_members),
            },
        )
