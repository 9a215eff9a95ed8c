"""Klaviyo, consent-gated mirror: who withdrew consent is unsubscribed, not only taken off the list.

Leaving the list alone would keep the profile ``SUBSCRIBED`` to email marketing, reachable by
every other campaign. Who merely left the segment keeps the subscription (the mirror semantic);
consent given again subscribes again, marked as our own API write.
"""

from __future__ import annotations

import requests

from orchestration.demo.fakes.klaviyo import KlaviyoFake
from reverse_etl.engine import run_sync
from tests.reverse_etl.conftest import (
    expected_members,
    gate_out,
    make_sync,
    set_consent,
    suppress,
)

LIST = "upgrade-flow"
KEY = "pk_test_unsub"


def _configure(fake: KlaviyoFake, monkeypatch) -> None:
    monkeypatch.setenv("KLAVIYO_BASE_URL", fake.url)
    monkeypatch.setenv("KLAVIYO_API_KEY", KEY)


def _sync():
    return make_sync("klaviyo", options={"list_name": LIST, "poll_interval": 0.01})


def test_withdrawn_consent_unsubscribes_and_regranted_consent_resubscribes(warehouse, monkeypatch):
    with KlaviyoFake(token=KEY) as fake:
        _configure(fake, monkeypatch)
        sync = _sync()
        assert run_sync(sync, db_path=warehouse).status == "success"
        sent = sorted(fake.list_profiles(LIST))
        assert set(sent) == set(expected_members(warehouse))
        # new rows of a consent-gated sync are subscribed, marked as our own API write
        assert {fake.consent(e) for e in sent} == {"SUBSCRIBED"}
        marketing = fake.profile(sent[0])["marketing"]
        assert (marketing["method"], marketing["custom_method_detail"]) == ("API", "composable-cdp")
        withdrawn, forgotten, leaver = sent[0], sent[1], sent[2]

        gate_out(warehouse, withdrawn, forgotten, leaver)

        plan = run_sync(sync, db_path=warehouse, dry_run=True)
        result = run_sync(sync, db_path=warehouse)
        assert (result.status, result.removed) == ("success", 3), result.message
        assert result.api_calls <= plan.api_calls + 1  # plus the list lookup
        assert not {withdrawn, forgotten, leaver} & set(fake.list_profiles(LIST))
        assert fake.consent(withdrawn) == "UNSUBSCRIBED"
        assert fake.consent(forgotten) == "UNSUBSCRIBED"
        assert fake.consent(leaver) == "SUBSCRIBED"
        assert fake.count("POST", "/api/profile-subscription-bulk-delete-jobs") == 1

        # consent given again: subscribed and listed again; nothing else is written
        set_consent(warehouse, withdrawn, True)
        mark = len(fake.write_log)
        result = run_sync(sync, db_path=warehouse)
        assert (result.status, result.added, result.changed, result.removed) == (
            "success",
            1,
            0,
            0,
        )
        assert fake.consent(withdrawn) == "SUBSCRIBED"
        assert withdrawn in fake.list_profiles(LIST)
        assert {e for _, _, e in fake.write_log[mark:]} == {withdrawn}
        assert fake.consent(forgotten) == "UNSUBSCRIBED"

        # an idle run writes nothing
        mark = len(fake.write_log)
        assert run_sync(sync, db_path=warehouse).api_calls == 0
        assert fake.write_log[mark:] == []


def test_a_deleted_profile_is_not_recreated_by_the_unsubscribe(warehouse, monkeypatch):
    """Deleted in Klaviyo (a privacy deletion), then suppressed: nothing brings it back."""
    with KlaviyoFake(token=KEY) as fake:
        _configure(fake, monkeypatch)
        sync = _sync()
        run_sync(sync, db_path=warehouse)
        gone = sorted(fake.list_profiles(LIST))[0]
        deleted = requests.post(
            f"{fake.url}/api/data-privacy-deletion-jobs",
            json={
                "data": {
                    "type": "data-privacy-deletion-job",
                    "attributes": {"profile": {"data": {"attributes": {"email": gone}}}},
                }
            },
            headers={"Authorization": f"Klaviyo-API-Key {KEY}", "revision": "2024-10-15"},
            timeout=10,
        )
        assert deleted.status_code == 202
        suppress(warehouse, gone)
        result = run_sync(sync, db_path=warehouse)
        assert (result.status, result.removed) == ("success", 1)
        assert fake.profile(gone) is None
        assert fake.count("POST", "/api/profile-subscription-bulk-delete-jobs") == 0
