"""Deletion in the destinations, against the vendor fakes over real HTTP (with injected faults)."""

from __future__ import annotations

import hashlib

import pytest
import requests

from orchestration.demo.fakes.hubspot_write import hubspot_fake_class
from orchestration.demo.fakes.klaviyo import KlaviyoFake
from orchestration.demo.fakes.mailchimp import MailchimpFake
from orchestration.privacy.destinations import (
    HubSpotEraser,
    KlaviyoEraser,
    MailchimpEraser,
    PersonRefs,
    configured_erasers,
)

PERSON = "ada.lovelace1@example.com"
PHONE = "+12010000001"
OTHER = "grace.hopper2@example.com"
HS, MC, KL = "hs-token", "mc-key-us1", "pk_test"


@pytest.fixture
def fakes(monkeypatch):
    faults = {"fault_rate": 0.15, "seed": 5}
    servers = {
        "hubspot": hubspot_fake_class()(token=HS, **faults),
        "mailchimp": MailchimpFake(token=MC, **faults),
        "klaviyo": KlaviyoFake(token=KL, **faults),
    }
    for server in servers.values():
        server.start()
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", HS)
    monkeypatch.setenv("HUBSPOT_BASE_URL", servers["hubspot"].url)
    monkeypatch.setenv("MAILCHIMP_API_KEY", MC)
    monkeypatch.setenv("MAILCHIMP_BASE_URL", servers["mailchimp"].url)
    monkeypatch.setenv("KLAVIYO_API_KEY", KL)
    monkeypatch.setenv("KLAVIYO_BASE_URL", servers["klaviyo"].url)
    yield servers
    for server in servers.values():
        server.stop()


def _send(method: str, url: str, **kwargs) -> requests.Response:
    """Fill a fake through its API, retrying the injected faults."""
    for _ in range(20):
        response = requests.request(method, url, timeout=10, **kwargs)
        if response.status_code < 500:
            response.raise_for_status()
            return response
    raise AssertionError(f"{method} {url} kept failing")


def _fill(servers) -> str:
    """Both people in every tool, the person twice in Mailchimp; returns the HubSpot id."""
    hs = servers["hubspot"].url
    auth = {"Authorization": f"Bearer {HS}"}
    inputs = [
        {"idProperty": "email", "id": e, "properties": {"firstname": "X"}} for e in (PERSON, OTHER)
    ]
    _send(
        "POST", f"{hs}/crm/v3/objects/contacts/batch/upsert", json={"inputs": inputs}, headers=auth
    )
    mc = servers["mailchimp"].url
    for name in ("newsletter", "product"):
        body = {
            "name": name,
            "contact": {"company": "c"},
            "permission_reminder": "you signed up",
            "campaign_defaults": {"from_name": "c"},
            "email_type_option": False,
        }
        list_id = _send("POST", f"{mc}/3.0/lists", json=body, auth=("x", MC)).json()["id"]
        members = [{"email_address": e, "status": "subscribed"} for e in (PERSON, OTHER)]
        _send("POST", f"{mc}/3.0/lists/{list_id}", json={"members": members}, auth=("x", MC))
    kl = servers["klaviyo"].url
    headers = {"Authorization": f"Klaviyo-API-Key {KL}", "revision": "2024-10-15"}
    profiles = [
        {"type": "profile", "attributes": {"email": PERSON, "phone_number": PHONE}},
        {"type": "profile", "attributes": {"email": OTHER}},
    ]
    body = {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": profiles}},
        }
    }
    _send("POST", f"{kl}/api/profile-bulk-import-jobs", json=body, headers=headers)
    return servers["hubspot"].contact_by_email(PERSON)["id"]


def _held(servers, email: str) -> dict[str, bool]:
    md5 = hashlib.md5(email.encode()).hexdigest()
    mc = servers["mailchimp"]
    return {
        "hubspot": servers["hubspot"].contact_by_email(email) is not None,
        "mailchimp": any(md5 in members for members in mc.members.values()),
        "klaviyo": any(
            p["attributes"]["email"] == email for p in servers["klaviyo"].profiles.values()
        ),
    }


def test_erasers_remove_the_person_from_every_tool_and_nobody_else(fakes) -> None:
    contact_id = _fill(fakes)
    assert _held(fakes, PERSON) == {"hubspot": True, "mailchimp": True, "klaviyo": True}
    erasers, skipped = configured_erasers()
    assert skipped == [] and {e.name for e in erasers} == {"hubspot", "mailchimp", "klaviyo"}
    refs = PersonRefs(emails=[PERSON], phones=[PHONE], ids={"hubspot_contact_id": [contact_id]})
    results = [r for eraser in erasers for r in eraser.erase(refs)]

    assert all(r.ok for r in results), results
    assert _held(fakes, PERSON) == {"hubspot": False, "mailchimp": False, "klaviyo": False}
    assert _held(fakes, OTHER) == {"hubspot": True, "mailchimp": True, "klaviyo": True}
    actions = {(r.destination, r.action.split(" in ")[0]) for r in results}
    assert ("mailchimp", "delete-permanent") in actions
    assert ("hubspot", "gdpr-delete contact") in actions
    assert ("klaviyo", "deletion job by phone_number") in actions
    # one delete-permanent per audience; the contact went by id, so its email is "not held"
    assert sum(r.destination == "mailchimp" for r in results) == 2
    for r in results:
        assert PERSON not in r.response.lower() and contact_id not in r.response
        assert r.ref.split(":")[1] != PERSON and len(r.ref.split(":")[1]) == 64

    # running it again is harmless: everything answers "not held" or accepted
    again = [r for eraser in erasers for r in eraser.erase(refs)]
    assert all(r.ok for r in again)


def test_refused_credentials_are_a_failed_receipt_not_a_crash(fakes, monkeypatch) -> None:
    _fill(fakes)
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "wrong")
    monkeypatch.setenv("MAILCHIMP_API_KEY", "wrong-us1")
    monkeypatch.setenv("KLAVIYO_API_KEY", "wrong")
    refs = PersonRefs(emails=[PERSON], phones=[PHONE])
    for cls in (HubSpotEraser, MailchimpEraser, KlaviyoEraser):
        results = cls.from_env().erase(refs)
        assert results and not any(r.ok for r in results), cls.name
        assert all(r.status == 401 and PERSON not in r.response for r in results), results
    assert _held(fakes, PERSON) == {"hubspot": True, "mailchimp": True, "klaviyo": True}


def test_missing_credentials_skip_the_tool(monkeypatch) -> None:
    for var in ("HUBSPOT_ACCESS_TOKEN", "MAILCHIMP_API_KEY", "KLAVIYO_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    erasers, skipped = configured_erasers()
    assert erasers == [] and skipped == ["hubspot", "mailchimp", "klaviyo"]
