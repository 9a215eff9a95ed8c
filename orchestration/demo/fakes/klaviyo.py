"""Klaviyo JSON:API fake: bulk profile import jobs, lists and list membership.

Follows Klaviyo's documented behaviour: ``Authorization: Klaviyo-API-Key <key>`` and a
``revision`` header on every request (400 without it); JSON:API bodies and error objects
(``errors: [{id, status, code, title, detail, source}]``); ``POST /api/profile-bulk-import-jobs``
upserts up to 10,000 profiles by email, optionally adding them to lists, answers 202 with a job
whose failures are read from ``/import-errors``; list membership is changed with
``POST|DELETE /api/lists/{id}/relationships/profiles`` (at most 1,000 profile ids); profiles are
filtered with ``filter=any(email,[...])``; ``POST /api/data-privacy-deletion-jobs`` deletes one.
Null attributes in a bulk import are ignored, as Klaviyo documents. Throttled requests get 429
with ``Retry-After``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import uuid
from typing import Any
from urllib.parse import unquote

from orchestration.demo.fakes.base import FakeServer, Request, Response, route

IMPORT_LIMIT = 10_000
RELATIONSHIP_LIMIT = 1_000
PAGE_MAX = 100
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PROFILE_ATTRIBUTES = {
    "email",
    "phone_number",
    "external_id",
    "first_name",
    "last_name",
    "organization",
    "title",
    "image",
    "location",
}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _error(status: int, code: str, title: str, detail: str, pointer: str | None = None) -> dict:
    error = {"id": str(uuid.uuid4()), "status": status, "code": code, "title": title}
    error["detail"] = detail
    if pointer:
        error["source"] = {"pointer": pointer}
    return error


def _errors(status: int, code: str, title: str, detail: str) -> Response:
    return Response(status, {"errors": [_error(status, code, title, detail)]})


def _filter_values(expr: str | None, field: str) -> list[str] | None:
    """``equals(field,"x")`` or ``any(field,["x","y"])`` -> the values; None when absent."""
    if not expr:
        return None
    m = re.fullmatch(rf'equals\({field},"(.*)"\)', expr)
    if m:
        return [m.group(1)]
    m = re.fullmatch(rf"any\({field},(\[.*\])\)", expr)
    if m:
        return [str(v) for v in json.loads(m.group(1))]
    return None


class KlaviyoFake(FakeServer):
    name = "klaviyo"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.profiles: dict[str, dict[str, Any]] = {}
        self.lists: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.write_log: list[tuple[float, str, str]] = []
        self._by_email: dict[str, str] = {}

    # -- helpers tests use -------------------------------------------------------------------
    def list_by_name(self, name: str) -> dict[str, Any] | None:
        return next((lst for lst in self.lists.values() if lst["name"] == name), None)

    def list_profiles(self, name: str) -> dict[str, dict[str, Any]]:
        """email -> attributes (custom properties flattened in) of the named list's members."""
        lst = self.list_by_name(name)
        if lst is None:
            return {}
        out = {}
        for pid in lst["profiles"]:
            attrs = self.profiles[pid]["attributes"]
            flat = {k: v for k, v in attrs.items() if k != "properties"}
            out[attrs["email"]] = {**flat, **attrs.get("properties", {})}
        return out

    # -- behaviours --------------------------------------------------------------------------
    def check_auth(self, request: Request) -> Response | None:
        if self.token is not None:
            if request.headers.get("authorization") != f"Klaviyo-API-Key {self.token}":
                return _errors(
                    401,
                    "not_authenticated",
                    "Authentication credentials were not provided.",
                    "Missing or invalid private key.",
                )
        if not request.headers.get("revision"):
            return _errors(400, "invalid", "Invalid input.", "The revision header is required.")
        return None

    def rate_limited_response(self) -> Response:
        response = _errors(
            429,
            "throttled",
            "Request was throttled.",
            f"Request was throttled. Expected available in {self.retry_after_seconds} second.",
        )
        response.headers["Retry-After"] = str(self.retry_after_seconds)
        return response

    def _page(self, request: Request, items: list[dict], path: str) -> Response:
        size = min(int(request.arg("page[size]", "20")), PAGE_MAX)
        start = int(request.arg("page[cursor]", "0") or 0)
        nxt = start + size
        link = (
            f"{self.url}{path}?page[size]={size}&page[cursor]={nxt}" if nxt < len(items) else None
        )
        return Response(200, {"data": items[start:nxt], "links": {"self": path, "next": link}})

    # -- lists -------------------------------------------------------------------------------
    def _list_view(self, lst: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "list",
            "id": lst["id"],
            "attributes": {"name": lst["name"], "created": lst["created"]},
        }

    @route("GET", r"/api/lists/?")
    def get_lists(self, request: Request) -> Response:
        names = _filter_values(unquote(request.arg("filter") or ""), "name")
        items = [
            self._list_view(lst)
            for lst in self.lists.values()
            if names is None or lst["name"] in names
        ]
        return self._page(request, items, "/api/lists")

    @route("POST", r"/api/lists/?")
    def create_list(self, request: Request) -> Response:
        data = (request.json() or {}).get("data") or {}
        name = (data.get("attributes") or {}).get("name")
        if data.get("type") != "list" or not name:
            return _errors(400, "invalid", "Invalid input.", "A list needs type and name.")
        list_id = uuid.uuid4().hex[:6]
        self.lists[list_id] = {"id": list_id, "name": name, "created": _now(), "profiles": set()}
        return Response(201, {"data": self._list_view(self.lists[list_id])})

    @route("POST", r"/api/lists/(?P<list_id>\w+)/relationships/profiles/?")
    def add_to_list(self, request: Request) -> Response:
        return self._change_list(request)

    @route("DELETE", r"/api/lists/(?P<list_id>\w+)/relationships/profiles/?")
    def remove_from_list(self, request: Request) -> Response:
        return self._change_list(request)

    def _change_list(self, request: Request) -> Response:
        lst = self.lists.get(request.params["list_id"])
        if lst is None:
            return _errors(404, "not_found", "Not found.", "List not found.")
        data = (request.json() or {}).get("data")
        if not isinstance(data, list):
            return _errors(400, "invalid", "Invalid input.", "data must be a list of profiles.")
        if len(data) > RELATIONSHIP_LIMIT:
            return _errors(
                400, "invalid", "Invalid input.", f"At most {RELATIONSHIP_LIMIT} profiles."
            )
        ids = [str(d.get("id")) for d in data]
        unknown = [i for i in ids if i not in self.profiles]
        if unknown:
            return _errors(400, "invalid", "Invalid input.", f"Unknown profile ids: {unknown}")
        for pid in ids:
            email = self.profiles[pid]["attributes"]["email"]
            if request.method == "POST":
                lst["profiles"].add(pid)
            else:
                lst["profiles"].discard(pid)
            self.write_log.append((time.time(), f"list_{request.method.lower()}", email))
        return Response(204)

    # -- profiles ----------------------------------------------------------------------------
    @route("GET", r"/api/profiles/?")
    def get_profiles(self, request: Request) -> Response:
        emails = _filter_values(unquote(request.arg("filter") or ""), "email")
        if emails is not None and len(emails) > PAGE_MAX:
            return _errors(400, "invalid", "Invalid input.", "At most 100 values in a filter.")
        if emails is None:
            pids = list(self.profiles)
        else:
            pids = [self._by_email[e] for e in (x.lower() for x in emails) if e in self._by_email]
        items = [
            {"type": "profile", "id": pid, "attributes": self.profiles[pid]["attributes"]}
            for pid in pids
        ]
        return self._page(request, items, "/api/profiles")

    @route("POST", r"/api/data-privacy-deletion-jobs/?")
    def request_deletion(self, request: Request) -> Response:
        """Deletes one profile, found by email, phone_number or id (202, no body)."""
        data = (request.json() or {}).get("data") or {}
        profile = ((data.get("attributes") or {}).get("profile") or {}).get("data") or {}
        attrs = profile.get("attributes") or {}
        if data.get("type") != "data-privacy-deletion-job" or len(attrs) != 1:
            return _errors(400, "invalid", "Invalid input.", "Give exactly one identifier.")
        (field, value), pid = next(iter(attrs.items())), None
        if field == "id":
            pid = value if value in self.profiles else None
        elif field == "email":
            pid = self._by_email.get(str(value).strip().lower())
        elif field == "phone_number":
            pid = next(
                (i for i, p in self.profiles.items() if p["attributes"].get(field) == value), None
            )
        if pid is not None:
            email = self.profiles.pop(pid)["attributes"]["email"]
            self._by_email.pop(email, None)
            for lst in self.lists.values():
                lst["profiles"].discard(pid)
            self.write_log.append((time.time(), "privacy_delete", email))
        return Response(202)

    @route("POST", r"/api/profile-bulk-import-jobs/?")
    def create_import_job(self, request: Request) -> Response:
        data = (request.json() or {}).get("data") or {}
        if data.get("type") != "profile-bulk-import-job":
            return _errors(400, "invalid", "Invalid input.", "type must be profile-bulk-import-job")
        profiles = ((data.get("attributes") or {}).get("profiles") or {}).get("data")
        if not isinstance(profiles, list) or not profiles:
            return _errors(400, "invalid", "Invalid input.", "profiles.data is required")
        if len(profiles) > IMPORT_LIMIT:
            return _errors(
                400, "invalid", "Invalid input.", f"At most {IMPORT_LIMIT} profiles per job."
            )
        list_ids = [
            str(x.get("id"))
            for x in ((data.get("relationships") or {}).get("lists") or {}).get("data") or []
        ]
        if any(i not in self.lists for i in list_ids):
            return _errors(400, "invalid", "Invalid input.", "Unknown list.")
        job_id = uuid.uuid4().hex
        errors, done = [], []
        for i, profile in enumerate(profiles):
            attrs = dict(profile.get("attributes") or {})
            email = str(attrs.get("email") or "")
            if not EMAIL.match(email.strip()):
                error = _error(
                    400,
                    "invalid",
                    "Invalid input.",
                    f"Invalid email address: {email!r}",
                    f"/data/attributes/profiles/data/{i}/attributes/email",
                )
                errors.append(
                    {
                        "type": "import-error",
                        "id": error.pop("id"),
                        "attributes": {**error, "original_payload": attrs},
                    }
                )
                continue
            done.append(self._upsert(email.strip().lower(), attrs, list_ids))
        self.jobs[job_id] = {
            "id": job_id,
            "status": "queued",
            "created_at": _now(),
            "total_count": len(profiles),
            "completed_count": len(done),
            "failed_count": len(errors),
            "errors": errors,
            "profiles": done,
            "lists": list_ids,
        }
        return Response(202, {"data": self._job_view(self.jobs[job_id], status="queued")})

    def _upsert(self, email: str, attrs: dict[str, Any], list_ids: list[str]) -> str:
        pid = self._by_email.get(email)
        if pid is None:
            pid = "01" + uuid.uuid4().hex[:24].upper()
            self.profiles[pid] = {"id": pid, "attributes": {"email": email, "properties": {}}}
            self._by_email[email] = pid
        target = self.profiles[pid]["attributes"]
        for key, value in attrs.items():
            if value is None or key == "email":
                continue  # bulk import does not clear fields
            if key == "properties":
                target["properties"].update({k: v for k, v in value.items() if v is not None})
            elif key in PROFILE_ATTRIBUTES:
                target[key] = value
        for list_id in list_ids:
            self.lists[list_id]["profiles"].add(pid)
        self.write_log.append((time.time(), "import", email))
        return pid

    def _job_view(self, job: dict[str, Any], status: str | None = None) -> dict[str, Any]:
        attrs = {
            k: job[k] for k in ("created_at", "total_count", "completed_count", "failed_count")
        }
        attrs["status"] = status or job["status"]
        if attrs["status"] == "complete":
            attrs["completed_at"] = _now()
        return {"type": "profile-bulk-import-job", "id": job["id"], "attributes": attrs}

    def _job(self, request: Request) -> dict[str, Any] | None:
        return self.jobs.get(request.params["job_id"])

    @route("GET", r"/api/profile-bulk-import-jobs/(?P<job_id>\w+)/?")
    def get_import_job(self, request: Request) -> Response:
        job = self._job(request)
        if job is None:
            return _errors(404, "not_found", "Not found.", "Job not found.")
        job["status"] = "complete"  # the fake processes at once; the first look says so
        return Response(200, {"data": self._job_view(job)})

    @route("GET", r"/api/profile-bulk-import-jobs/(?P<job_id>\w+)/import-errors/?")
    def get_import_errors(self, request: Request) -> Response:
        job = self._job(request)
        if job is None:
            return _errors(404, "not_found", "Not found.", "Job not found.")
        path = f"/api/profile-bulk-import-jobs/{job['id']}/import-errors"
        return self._page(request, job["errors"], path)
