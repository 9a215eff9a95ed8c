"""The fakes keep to the vendors' documented limits and shapes, and delete on request."""

from __future__ import annotations

import hashlib
import threading
import time

import requests

from orchestration.demo.fakes.klaviyo import KlaviyoFake
from orchestration.demo.fakes.mailchimp import MailchimpFake
from tests.reverse_etl.harness import HubSpotTestFake

KLAVIYO = {"Authorization": "Klaviyo-API-Key pk", "revision": "2024-10-15"}


def _upsert(url: str, emails: list[str]) -> requests.Response:
    inputs = [{"idProperty": "email", "id": e, "properties": {"firstname": "A"}} for e in emails]
    return requests.post(f"{url}/crm/v3/objects/contacts/batch/upsert", json={"inputs": inputs})


def test_hubspot_batch_limit_multi_status_and_deletion():
    with HubSpotTestFake() as fake:
        too_many = _upsert(fake.url, [f"p{i}@example.com" for i in range(101)])
        assert too_many.status_code == 400 and too_many.json()["category"] == "VALIDATION_ERROR"
        mixed = _upsert(fake.url, ["Ada@Example.com", "not-an-email"])
        assert mixed.status_code == 207
        body = mixed.json()
        assert [r["properties"]["email"] for r in body["results"]] == ["ada@example.com"]
        assert body["numErrors"] == 1 and "INVALID_EMAIL" in body["errors"][0]["message"]
        again = _upsert(fake.url, ["ada@example.com"]).json()["results"][0]
        assert again["new"] is False and len(fake.contacts) == 1

        created = requests.post(
            f"{fake.url}/crm/v3/lists",
            json={"name": "VIP", "objectTypeId": "0-1", "processingType": "MANUAL"},
        ).json()["list"]
        found = requests.get(f"{fake.url}/crm/v3/lists/object-type-id/0-1/name/VIP").json()
        assert found["list"]["listId"] == created["listId"]
        added = requests.put(
            f"{fake.url}/crm/v3/lists/{created['listId']}/memberships/add",
            json=[again["id"], "999"],
        ).json()
        assert added == {"recordIdsAdded": [again["id"]], "recordIdsMissing": ["999"]}

        gone = requests.post(
            f"{fake.url}/crm/v3/objects/contacts/gdpr-delete",
            json={"objectId": "ada@example.com", "idProperty": "email"},
        )
        assert gone.status_code == 204 and fake.contacts == {} and fake.list_contacts("VIP") == {}


def test_mailchimp_limits_connections_and_permanent_deletion():
    with MailchimpFake(token="key-us1") as fake:
        auth = ("any", "key-us1")
        assert requests.get(f"{fake.url}/3.0/lists", auth=("any", "wrong")).status_code == 401
        audience = requests.post(
            f"{fake.url}/3.0/lists",
            auth=auth,
            json={
                "name": "A",
                "contact": {"company": "x"},
                "permission_reminder": "y",
                "campaign_defaults": {"from_email": "z@example.com"},
                "email_type_option": False,
            },
        ).json()
        url = f"{fake.url}/3.0/lists/{audience['id']}"
        members = [
            {"email_address": f"m{i}@example.com", "status": "subscribed"} for i in range(501)
        ]
        assert requests.post(url, auth=auth, json={"members": members}).status_code == 400
        answer = requests.post(
            url,
            auth=auth,
            json={"members": members[:2] + [{"email_address": "bad", "status": "subscribed"}]},
        ).json()
        assert (answer["total_created"], answer["error_count"]) == (2, 1)
        assert "looks fake or invalid" in answer["errors"][0]["error"]

        statuses, barrier = [], threading.Barrier(14)

        def slow_call():
            barrier.wait()
            statuses.append(requests.get(f"{url}/segments", auth=auth).status_code)

        original = fake.get_segments

        first = threading.Event()

        def held_open(request):  # keep the first connection busy until the others pile up
            deadline = time.monotonic() + (0 if first.is_set() else 5)
            first.set()
            while fake.max_concurrent_seen <= 10 and time.monotonic() < deadline:
                time.sleep(0.01)
            return original(request)

        fake._routes = [held_open if r == original else r for r in fake._routes]
        held_open._route = original._route
        threads = [threading.Thread(target=slow_call) for _ in range(14)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert fake.max_concurrent_seen > 10 and statuses.count(429) >= 1

        digest = hashlib.md5(b"m0@example.com").hexdigest()
        deleted = requests.post(f"{url}/members/{digest}/actions/delete-permanent", auth=auth)
        assert deleted.status_code == 204
        assert requests.get(f"{url}/members/{digest}", auth=auth).status_code == 404


def test_klaviyo_needs_a_revision_and_deletes_profiles():
    with KlaviyoFake(token="pk") as fake:
        no_revision = requests.get(
            f"{fake.url}/api/lists", headers={"Authorization": "Klaviyo-API-Key pk"}
        )
        assert no_revision.status_code == 400
        assert no_revision.json()["errors"][0]["detail"].startswith("The revision header")
        job = {
            "data": {
                "type": "profile-bulk-import-job",
                "attributes": {
                    "profiles": {
                        "data": [
                            {
                                "type": "profile",
                                "attributes": {"email": "k@example.com", "first_name": "K"},
                            },
                            {"type": "profile", "attributes": {"email": "nope"}},
                        ]
                    }
                },
            }
        }
        created = requests.post(
            f"{fake.url}/api/profile-bulk-import-jobs", headers=KLAVIYO, json=job
        )
        assert created.status_code == 202
        job_id = created.json()["data"]["id"]
        status = requests.get(f"{fake.url}/api/profile-bulk-import-jobs/{job_id}", headers=KLAVIYO)
        assert status.json()["data"]["attributes"]["failed_count"] == 1
        errors = requests.get(
            f"{fake.url}/api/profile-bulk-import-jobs/{job_id}/import-errors", headers=KLAVIYO
        ).json()["data"]
        assert errors[0]["attributes"]["source"]["pointer"].startswith(
            "/data/attributes/profiles/data/1"
        )
        deletion = {
            "data": {
                "type": "data-privacy-deletion-job",
                "attributes": {
                    "profile": {
                        "data": {"type": "profile", "attributes": {"email": "K@example.com"}}
                    }
                },
            }
        }
        gone = requests.post(
            f"{fake.url}/api/data-privacy-deletion-jobs", headers=KLAVIYO, json=deletion
        )
        assert gone.status_code == 202 and fake.profiles == {}
