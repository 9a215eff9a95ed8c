"""Destination options beyond the contract: update-only, archive on removal, one POST per row."""

from __future__ import annotations

from orchestration.demo.fakes.mailchimp import MailchimpFake
from orchestration.demo.fakes.webhook import WebhookReceiver
from reverse_etl.engine import run_sync
from tests.reverse_etl.conftest import MODEL, expected_members, make_sync, sql
from tests.reverse_etl.harness import HubSpotTestFake


def _hubspot_env(monkeypatch, fake) -> None:
    monkeypatch.setenv("HUBSPOT_BASE_URL", fake.url)
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "t")


def _leave(db, n: int) -> list[str]:
    """``n`` sent members leave the model; returns their emails."""
    leavers = sorted(expected_members(db))[:n]
    sql(db, f"delete from {MODEL} where email in (select unnest(?::varchar[]))", [leavers])
    return leavers


def test_hubspot_update_mode_touches_only_existing_contacts(warehouse, monkeypatch):
    expected = expected_members(warehouse)
    existing = sorted(expected)[:5]
    with HubSpotTestFake(token="t") as fake:
        _hubspot_env(monkeypatch, fake)
        for i, email in enumerate(existing, start=1):
            fake.contacts[str(i)] = {
                "id": str(i),
                "properties": {"email": email, "firstname": "old"},
                "archived": False,
            }
        result = run_sync(make_sync("hubspot", mode="update"), db_path=warehouse)
        assert result.changed + result.added == len(existing)
        assert result.failed == len(expected) - len(existing)
        assert len(fake.contacts) == len(existing)
        assert {c["properties"]["firstname"] for c in fake.contacts.values()} == {
            expected[e]["firstname"] for e in existing
        }
        errors = sql(
            warehouse,
            "select distinct error from ops.sync_row_results where status = 'failed'",
        )
        assert all("Object not found" in e for (e,) in errors)


def test_hubspot_mirror_can_archive_leavers(warehouse, monkeypatch):
    with HubSpotTestFake(token="t") as fake:
        _hubspot_env(monkeypatch, fake)
        sync = make_sync("hubspot", options={"remove": "archive"})
        run_sync(sync, db_path=warehouse)
        leavers = _leave(warehouse, 3)
        result = run_sync(sync, db_path=warehouse)
        assert result.removed == 3
        live = {c["properties"]["email"] for c in fake.contacts.values() if not c.get("archived")}
        assert live == set(expected_members(warehouse))
        archived = {c["properties"]["email"] for c in fake.contacts.values() if c.get("archived")}
        assert archived == set(leavers) and fake.count("DELETE") == 3


def test_mailchimp_mirror_without_a_tag_archives_leavers(warehouse, monkeypatch):
    with MailchimpFake() as fake:
        monkeypatch.setenv("MAILCHIMP_BASE_URL", fake.url)
        monkeypatch.setenv("MAILCHIMP_API_KEY", "k-us1")
        fields = {"email": "email", "FNAME": "first_name", "LNAME": "last_name"}
        sync = make_sync("mailchimp", fields=fields, options={"audience": "News"})
        run_sync(sync, db_path=warehouse)
        assert set(fake.audience_members("News")) == set(expected_members(warehouse))
        leavers = _leave(warehouse, 4)
        result = run_sync(sync, db_path=warehouse)
        assert result.removed == 4
        assert set(fake.audience_members("News")) == set(expected_members(warehouse))
        assert set(fake.audience_members("News", status="archived")) == set(leavers)


def test_webhook_can_post_one_change_per_request(warehouse, monkeypatch):
    with WebhookReceiver(secret="s") as hook:
        monkeypatch.setenv("CDP_WEBHOOK_URL", f"{hook.url}/hooks/each")
        monkeypatch.setenv("CDP_WEBHOOK_SECRET", "s")
        sync = make_sync("webhook", batch_size=10, options={"per": "row"})
        plan = run_sync(sync, db_path=warehouse, dry_run=True)
        result = run_sync(sync, db_path=warehouse)
        n = len(expected_members(warehouse))
        assert result.api_calls == plan.api_calls == n
        assert all(len(d["payload"]["rows"]) == 1 for d in hook.deliveries)
        assert hook.records["each"] == expected_members(warehouse)


def test_concurrent_batches_stay_within_mailchimps_connection_limit(warehouse, monkeypatch):
    with MailchimpFake(latency=0.05) as fake:
        monkeypatch.setenv("MAILCHIMP_BASE_URL", fake.url)
        monkeypatch.setenv("MAILCHIMP_API_KEY", "k-us1")
        fields = {"email": "email", "FNAME": "first_name", "LNAME": "last_name"}
        options = {"audience": "News", "tag": "vip"}
        sync = make_sync("mailchimp", fields=fields, options=options, batch_size=3, concurrency=6)
        result = run_sync(sync, db_path=warehouse)
        assert result.status == "success" and result.failed == 0
        assert set(fake.tagged("News", "vip")) == set(expected_members(warehouse))
        assert 1 < fake.max_concurrent_seen <= 6
        assert not [c for c in fake.calls if c.status == 429]
        recorded = sql(
            warehouse, "select count(*) from ops.sync_row_results where status = 'success'"
        )
        assert recorded[0][0] == result.added
