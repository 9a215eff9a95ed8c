"""Mailchimp and Klaviyo sources against their local fakes over real HTTP."""

from __future__ import annotations

import datetime as dt

import pytest

from connectors import klaviyo, mailchimp
from connectors.ingest import ingest, ingest_stream
from orchestration.demo.generator import MAILCHIMP_LIST_ID
from tests.connectors.fakes import serve
from tests.connectors.helpers import assert_raw_equals_source, rows, scalar

TABLES = {"mailchimp": "mailchimp.members", "klaviyo": "klaviyo.profiles"}


@pytest.mark.parametrize("vendor", list(TABLES))
def test_full_load_equals_source_and_second_run_loads_nothing(
    vendor, small_demo, cdp_env, monkeypatch
):
    # small pages, so paging and the per-page cursor are exercised on the small demo
    monkeypatch.setattr(mailchimp, "PAGE_COUNT", 10)
    monkeypatch.setattr(klaviyo, "PAGE_SIZE", 7)
    with serve(vendor, small_demo, monkeypatch) as fake:
        results = ingest(sources=[vendor])
        assert [r.status for r in results] == ["ok"], [r.message for r in results]
        assert results[0].rows_loaded == small_demo.tables[TABLES[vendor]].height
        assert_raw_equals_source(cdp_env, small_demo, TABLES[vendor])
        again = ingest(sources=[vendor])
        assert [r.rows_loaded for r in again] == [0]
        assert_raw_equals_source(cdp_env, small_demo, TABLES[vendor])
        assert fake.count("GET") > 10  # it paged


def test_mailchimp_unsubscribe_and_a_second_audience_arrive_next_run(
    small_demo, cdp_env, monkeypatch
):
    members = small_demo.tables["mailchimp.members"]
    email = members.filter(members["status"] == "subscribed")["email_address"][0]
    with serve("mailchimp", small_demo, monkeypatch) as fake:
        assert ingest_stream("mailchimp", "members").status == "ok"
        fake.person_unsubscribes("Newsletter", email, reason="Too many emails")
        other = fake.add_list("Product updates")
        fake.person_subscribes("Product updates", email)
        result = ingest_stream("mailchimp", "members")
        assert result.rows_loaded == 2, result.message
        got = rows(
            cdp_env,
            "select list_id, status, unsubscribe_reason, source from raw_mailchimp.members "
            "where lower(email_address) = lower(?) order by status",
            [email],
        )
        assert got == [
            (other["id"], "subscribed", "", "Hosted Signup Form"),
            (MAILCHIMP_LIST_ID, "unsubscribed", "Too many emails", "Hosted Signup Form"),
        ]
        total = members.height + 1
        assert scalar(cdp_env, "select count(distinct member_key) from raw_mailchimp.members") == (
            total
        )
        assert scalar(cdp_env, "select count(*) from raw_mailchimp.members") == total
        # the incremental run asked only for what changed since the cursor
        assert scalar(cdp_env, "select count(*) from ops.quarantine") == 0


def test_mailchimp_members_changed_in_one_second_beyond_a_page_are_all_read(cdp_env, monkeypatch):
    """250 members changed in the same second, pages of 40: nothing lost or doubled."""
    monkeypatch.setattr(mailchimp, "PAGE_COUNT", 40)
    with serve("mailchimp", None, monkeypatch) as fake:
        fake.add_list("News")
        fake.person_subscribes("News", "seed@x.com", when=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        assert ingest_stream("mailchimp", "members").rows_loaded == 1
        same = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=1)
        for i in range(250):
            fake.person_subscribes("News", f"m{i}@x.com", when=same)
        result = ingest_stream("mailchimp", "members")
        assert result.status == "ok", result.message
        assert result.rows_loaded == 250
        assert (
            scalar(cdp_env, "select count(distinct member_key) from raw_mailchimp.members") == 251
        )


def test_klaviyo_consent_changes_arrive_next_run_with_their_method(
    small_demo, cdp_env, monkeypatch
):
    profiles = small_demo.tables["klaviyo.profiles"]
    subscribed = profiles.filter(profiles["email_marketing_consent"] == "SUBSCRIBED")
    email = subscribed["email"][0]
    with serve("klaviyo", small_demo, monkeypatch) as fake:
        assert ingest_stream("klaviyo", "profiles").status == "ok"
        when = dt.datetime.now(dt.UTC).replace(microsecond=0)
        fake.person_unsubscribes(email, when=when)
        fake.person_subscribes("new.person@example.com")
        result = ingest_stream("klaviyo", "profiles")
        assert result.rows_loaded == 2, result.message
        got = rows(
            cdp_env,
            "select email_marketing_consent, email_marketing_method, "
            "email_marketing_consent_timestamp from raw_klaviyo.profiles where email = ?",
            [email],
        )
        assert got == [("UNSUBSCRIBED", "PREFERENCE_PAGE", when.replace(tzinfo=None))]
        assert scalar(cdp_env, "select count(*) from raw_klaviyo.profiles") == profiles.height + 1
        # later runs filter on the cursor: the last request asked for recent changes only
        assert fake.count("GET", "/api/profiles") >= 3


def test_klaviyo_profile_changed_while_listed_is_not_lost(cdp_env, monkeypatch):
    """A keyset cursor: a profile updated mid-listing moves to the end and is read there."""
    monkeypatch.setattr(klaviyo, "PAGE_SIZE", 5)
    with serve("klaviyo", None, monkeypatch) as fake:
        for i in range(20):
            fake.person_subscribes(f"p{i}@x.com")
        conn = klaviyo.KlaviyoConnector.from_env()
        pages = conn.read("profiles", None)
        first = next(pages)
        fake.person_unsubscribes("p0@x.com")  # already read; changes while the rest is listed
        seen = [r for page in [first, *pages] for r in page.records]
        conn.close()
        emails = [r.split('"email":"')[1].split('"')[0] for r in seen]
        assert set(emails) == {f"p{i}@x.com" for i in range(20)}
        assert emails.count("p0@x.com") == 2  # read before and after its change


def test_sources_without_credentials_are_skipped(cdp_env, monkeypatch):
    for var in ("MAILCHIMP_API_KEY", "KLAVIYO_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    results = ingest(sources=["mailchimp", "klaviyo"])
    assert {(r.source, r.status) for r in results} == {
        ("mailchimp", "skipped"),
        ("klaviyo", "skipped"),
    }
    assert all("_API_KEY" in r.message for r in results)


@pytest.mark.parametrize("vendor", list(TABLES))
def test_a_refused_key_fails_the_source_naming_the_variable_without_the_key(
    vendor, small_demo, cdp_env, monkeypatch
):
    with serve(vendor, small_demo, monkeypatch):
        wrong = "wrong-key-0123456789-us1"
        monkeypatch.setenv(f"{vendor.upper()}_API_KEY", wrong)
        (result,) = ingest(sources=[vendor])
        assert result.status == "failed"
        assert "401" in result.message and f"{vendor.upper()}_API_KEY" in result.message
        assert wrong not in result.message
        assert scalar(cdp_env, "select count(*) from ops.connector_state") == 0
