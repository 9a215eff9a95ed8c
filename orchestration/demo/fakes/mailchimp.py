"""Mailchimp Marketing API 3.0 fake: audiences, batch subscribe, static segments (tags).

Follows the documented shapes: basic auth with the API key as password; ``POST /3.0/lists/{id}``
batch subscribes at most 500 members and reports per-member ``errors`` beside ``new_members`` and
``updated_members``; ``POST /3.0/lists/{id}/segments/{segment_id}`` adds and removes up to 500
emails per side; errors are problem-detail JSON (``type``, ``title``, ``status``, ``detail``);
more than 10 simultaneous connections get 429, as Mailchimp's documented connection limit.
Members are keyed by the subscriber hash, the MD5 of the lower-cased email.
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

BATCH_LIMIT = 500
CONNECTION_LIMIT = 10
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
STATUSES = {"subscribed", "unsubscribed", "cleaned", "pending", "transactional"}
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


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


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

    # -- helpers tests use -------------------------------------------------------------------
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
        list_id = hashlib.md5(f"{body['name']}{len(self.lists)}".encode()).hexdigest()[:10]
        self.lists[list_id] = {"id": list_id, "name": body["name"], "date_created": _now()}
        self.members[list_id] = {}
        self.segments[list_id] = {}
        return Response(200, self._list_view(self.lists[list_id]))

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
                    "status": item.get("status_if_new") or status,
                    "merge_fields": {},
                    "timestamp_signup": _now(),
                }
                store[h] = member
                created.append(member)
            else:
                if item.get("status"):
                    member["status"] = item["status"]
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
