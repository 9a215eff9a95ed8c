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

Consent: ``POST /api/profile-subscription-bulk-create-jobs`` subscribes profiles to email
marketing (``custom_source`` is kept as the consent's ``custom_method_detail``, the method is
``API``) and ``POST /api/profile-subscription-bulk-delete-jobs`` unsubscribes them; both answer
202 without a body. Subscribing a subscribed (unsubscribing an unsubscribed) profile keeps its
consent record: how and when the person decided is not overwritten by a repeat.
``GET /api/profiles`` lists profiles for the source connector: ``sort``
(``updated``/``-updated``), ``filter=greater-than(updated,...)``, ``page[size]`` at most 100, a
``links.next`` URL with an opaque keyset cursor (a profile changed mid-listing is never skipped),
and the ``subscriptions`` attribute only when ``additional-fields[profile]=subscriptions`` asks.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import time
import uuid
from typing import Any
from urllib.parse import unquote, urlencode

from orchestration.demo.fakes.base import FakeServer, Request, Response, route
from orchestration.demo.generator import DemoData

IMPORT_LIMIT = 10_000
SUBSCRIPTION_LIMIT = 1_000
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


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat()


def _now() -> str:
    return _iso(dt.datetime.now(dt.UTC))


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _marketing(consent: str = "NEVER_SUBSCRIBED", when: str | None = None, **more: Any) -> dict:
    """A profile's ``subscriptions.email.marketing`` as Klaviyo reports it."""
    return {
        "can_receive_email_marketing": consent == "SUBSCRIBED",
        "consent": consent,
        "consent_timestamp": when,
        "last_updated": when,
        "method": more.get("method"),
        "method_detail": more.get("method_detail"),
        "custom_method_detail": more.get("custom_method_detail"),
        "double_optin": None,
        "suppression": [{"reason": "UNSUBSCRIBE", "timestamp": when}]
        if consent == "UNSUBSCRIBED"
        else [],
        "list_suppressions": [],
    }


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

    @classmethod
    def from_demo(cls, data: DemoData, **kwargs: Any) -> KlaviyoFake:
        """Profiles of the generator's ``klaviyo.profiles``, with their email consent."""
        fake = cls(**kwargs)
        for row in data.source("klaviyo.profiles").iter_rows(named=True):
            attrs = {
                k: row[k]
                for k in ("email", "phone_number", "external_id", "first_name", "last_name")
                if row[k] is not None
            }
            stamp = row["email_marketing_consent_timestamp"]
            fake.profiles[row["id"]] = {
                "id": row["id"],
                "attributes": {
                    **attrs,
                    "properties": {},
                    "created": _iso(row["created"]),
                    "updated": _iso(row["updated"]),
                },
                "marketing": _marketing(
                    row["email_marketing_consent"],
                    _iso(stamp) if stamp else None,
                    method=row["email_marketing_method"],
                    custom_method_detail=row["email_marketing_custom_method_detail"],
                ),
            }
            fake._by_email[row["email"].strip().lower()] = row["id"]
        return fake

    # -- helpers tests use -------------------------------------------------------------------
    def profile(self, email: str) -> dict[str, Any] | None:
        pid = self._by_email.get(email.strip().lower())
        return self.profiles.get(pid) if pid else None

    def consent(self, email: str) -> str | None:
        """The profile's email marketing consent (None when there is no such profile)."""
        profile = self.profile(email)
        return profile["marketing"]["consent"] if profile else None

    def _set_consent(self, pid: str, consent: str, when: str, **more: Any) -> None:
        profile = self.profiles[pid]
        profile["marketing"] = _marketing(consent, when, **more)
        profile["attributes"]["updated"] = when

    def person_unsubscribes(self, email: str, when: dt.datetime | None = None) -> None:
        """The person clicks "unsubscribe" (Klaviyo records the preference page)."""
        with self._lock:
            pid = self._by_email[email.strip().lower()]
            stamp = _iso(when or dt.datetime.now(dt.UTC))
            self._set_consent(pid, "UNSUBSCRIBED", stamp, method="PREFERENCE_PAGE")

    def person_subscribes(self, email: str, when: dt.datetime | None = None) -> None:
        """The person signs up through a Klaviyo form."""
        with self._lock:
            pid = self._by_email.get(email.strip().lower()) or self._upsert(
                email.strip().lower(), {}, []
            )
            stamp = _iso(when or dt.datetime.now(dt.UTC))
            self._set_consent(pid, "SUBSCRIBED", stamp, method="FORM")

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
    def _profile_view(self, pid: str, subscriptions: bool) -> dict[str, Any]:
        profile = self.profiles[pid]
        attrs = dict(profile["attributes"])
        if subscriptions:
            attrs["subscriptions"] = {"email": {"marketing": profile["marketing"]}}
        return {
            "type": "profile",
            "id": pid,
            "attributes": attrs,
            "links": {"self": f"{self.url}/api/profiles/{pid}/"},
        }

    @route("GET", r"/api/profiles/?")
    def get_profiles(self, request: Request) -> Response:
        flt = unquote(request.arg("filter") or "")
        wanted = (request.arg("additional-fields[profile]") or "").split(",")
        subscriptions = "subscriptions" in wanted
        emails = _filter_values(flt, "email")
        if emails is not None:
            if len(emails) > PAGE_MAX:
                return _errors(400, "invalid", "Invalid input.", "At most 100 values in a filter.")
            pids = [self._by_email[e] for e in (x.lower() for x in emails) if e in self._by_email]
            items = [self._profile_view(pid, subscriptions) for pid in pids]
            return self._page(request, items, "/api/profiles")
        return self._list_profiles(request, flt, subscriptions)

    def _list_profiles(self, request: Request, flt: str, subscriptions: bool) -> Response:
        """Every profile (or those updated after a time), keyset-paged on the sort order."""
        size = int(request.arg("page[size]", "20"))
        if not 1 <= size <= PAGE_MAX:
            return _errors(400, "invalid", "Invalid input.", f"page[size] must be 1 to {PAGE_MAX}.")
        after = None
        if flt:
            m = re.fullmatch(r"greater-than\(updated,(.+)\)", flt)
            if m is None:
                return _errors(400, "invalid", "Invalid input.", f"Unsupported filter {flt!r}.")
            after = _parse(m.group(1))
        sort = request.arg("sort") or "id"
        if sort not in ("id", "updated", "-updated"):
            return _errors(400, "invalid", "Invalid input.", f"Unsupported sort {sort!r}.")

        def key(pid: str) -> tuple:
            updated = _parse(self.profiles[pid]["attributes"]["updated"]).timestamp()
            return (0.0, pid) if sort == "id" else (updated, pid)

        pids = [
            pid
            for pid, p in self.profiles.items()
            if after is None or _parse(p["attributes"]["updated"]) > after
        ]
        pids.sort(key=key, reverse=sort == "-updated")
        token = request.arg("page[cursor]")
        if token:
            last = tuple(json.loads(base64.urlsafe_b64decode(token.encode())))
            if sort == "-updated":
                pids = [p for p in pids if key(p) < last]
            else:
                pids = [p for p in pids if key(p) > last]
        page = pids[:size]
        link = None
        if len(pids) > size:
            cursor = base64.urlsafe_b64encode(json.dumps(list(key(page[-1]))).encode()).decode()
            params = {k: v[0] for k, v in request.query.items() if k != "page[cursor]"}
            link = f"{self.url}/api/profiles/?{urlencode({**params, 'page[cursor]': cursor})}"
        data = [self._profile_view(pid, subscriptions) for pid in page]
        return Response(200, {"data": data, "links": {"self": "/api/profiles", "next": link}})

    # -- email marketing subscriptions -------------------------------------------------------
    def _subscription_job(self, request: Request, kind: str) -> tuple[list, dict] | Response:
        data = (request.json() or {}).get("data") or {}
        if data.get("type") != kind:
            return _errors(400, "invalid", "Invalid input.", f"type must be {kind}")
        attrs = data.get("attributes") or {}
        profiles = (attrs.get("profiles") or {}).get("data")
        if not isinstance(profiles, list) or not profiles:
            return _errors(400, "invalid", "Invalid input.", "profiles.data is required")
        if len(profiles) > SUBSCRIPTION_LIMIT:
            return _errors(
                400, "invalid", "Invalid input.", f"At most {SUBSCRIPTION_LIMIT} profiles."
            )
        list_ref = (((data.get("relationships") or {}).get("list") or {}).get("data")) or {}
        if list_ref and str(list_ref.get("id")) not in self.lists:
            return _errors(404, "not_found", "Not found.", "List not found.")
        return profiles, {**attrs, "list_id": list_ref.get("id")}

    @staticmethod
    def _consent_of(profile: dict[str, Any]) -> str | None:
        subs = (profile.get("attributes") or {}).get("subscriptions") or {}
        return ((subs.get("email") or {}).get("marketing") or {}).get("consent")

    @route("POST", r"/api/profile-subscription-bulk-create-jobs/?")
    def subscribe_job(self, request: Request) -> Response:
        parsed = self._subscription_job(request, "profile-subscription-bulk-create-job")
        if isinstance(parsed, Response):
            return parsed
        profiles, attrs = parsed
        for i, profile in enumerate(profiles):
            email = str((profile.get("attributes") or {}).get("email") or "").strip().lower()
            if not EMAIL.match(email) or self._consent_of(profile) != "SUBSCRIBED":
                detail = "Each profile needs an email and email marketing consent SUBSCRIBED."
                return Response(
                    400,
                    {"errors": [_error(400, "invalid", "Invalid input.", detail, f"/data/{i}")]},
                )
        stamp = _now()
        for profile in profiles:
            email = str(profile["attributes"]["email"]).strip().lower()
            pid = self._by_email.get(email) or self._upsert(email, {}, [])
            if self.profiles[pid]["marketing"]["consent"] != "SUBSCRIBED":
                # subscribing the subscribed keeps their consent record (how and when they said yes)
                self._set_consent(
                    pid,
                    "SUBSCRIBED",
                    stamp,
                    method="API",
                    custom_method_detail=attrs.get("custom_source"),
                )
            if attrs["list_id"]:
                self.lists[attrs["list_id"]]["profiles"].add(pid)
            self.write_log.append((time.time(), "subscribe", email))
        return Response(202)

    @route("POST", r"/api/profile-subscription-bulk-delete-jobs/?")
    def unsubscribe_job(self, request: Request) -> Response:
        parsed = self._subscription_job(request, "profile-subscription-bulk-delete-job")
        if isinstance(parsed, Response):
            return parsed
        profiles, attrs = parsed
        stamp = _now()
        for profile in profiles:
            email = str((profile.get("attributes") or {}).get("email") or "").strip().lower()
            pid = self._by_email.get(email)
            if pid is None:
                continue  # nobody to unsubscribe; a forgotten person is not re-created
            if self.profiles[pid]["marketing"]["consent"] != "UNSUBSCRIBED":
                self._set_consent(pid, "UNSUBSCRIBED", stamp, method="API")
            if attrs["list_id"]:
                self.lists[attrs["list_id"]]["profiles"].discard(pid)
            self.write_log.append((time.time(), "unsubscribe", email))
        return Response(202)

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
        stamp = _now()
        if pid is None:
            pid = "01" + uuid.uuid4().hex[:24].upper()
            self.profiles[pid] = {
                "id": pid,
                "attributes": {"email": email, "properties": {}, "created": stamp},
                "marketing": _marketing(),
            }
            self._by_email[email] = pid
        target = self.profiles[pid]["attributes"]
        target["updated"] = stamp
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
