"""HubSpot, Stripe and Zendesk connectors against their local fakes over real HTTP."""

from __future__ import annotations

import datetime as dt

import pytest

from connectors import hubspot, stripe, zendesk
from connectors.ingest import ingest, ingest_stream
from tests.connectors.fakes import TOKENS, serve
from tests.connectors.helpers import assert_raw_equals_source, rows, scalar

VENDOR_TABLES = {
    "hubspot": ["hubspot.contacts", "hubspot.companies"],
    "stripe": ["stripe.customers", "stripe.charges"],
    "zendesk": ["zendesk.users", "zendesk.tickets"],
}


@pytest.mark.parametrize("vendor", list(VENDOR_TABLES))
def test_full_load_equals_source_and_second_run_loads_nothing(
    vendor, small_demo, cdp_env, monkeypatch
):
    with serve(vendor, small_demo, monkeypatch):
        results = ingest(sources=[vendor])
        assert [r.status for r in results] == ["ok", "ok"], [r.message for r in results]
        for table in VENDOR_TABLES[vendor]:
            assert_raw_equals_source(cdp_env, small_demo, table)
        again = ingest(sources=[vendor])
        assert [r.rows_loaded for r in again] == [0, 0]
        for table in VENDOR_TABLES[vendor]:
            assert_raw_equals_source(cdp_env, small_demo, table)


def test_hubspot_updates_and_new_contacts_arrive_next_run(small_demo, cdp_env, monkeypatch):
    with serve("hubspot", small_demo, monkeypatch) as fake:
        ingest(sources=["hubspot"])
        fake.update_contact("50001", email="moved@example.com", hs_email_optout=True)
        new = fake.add_contact(email="fresh@example.com", firstname="Fresh")
        result = ingest_stream("hubspot", "contacts")
        assert result.rows_loaded == 2
        got = rows(
            cdp_env,
            "select id, email, hs_email_optout from raw_hubspot.contacts "
            "where id in ('50001', ?) order by id",
            [new["id"]],
        )
        assert got == [("50001", "moved@example.com", True), (new["id"], "fresh@example.com", None)]
        assert fake.count("POST", "/crm/v3/objects/contacts/search") >= 1
        total = small_demo.tables["hubspot.contacts"].height + 1
        assert scalar(cdp_env, "select count(distinct id) from raw_hubspot.contacts") == total
        assert scalar(cdp_env, "select count(*) from raw_hubspot.contacts") == total


def test_hubspot_search_rewindows_past_the_result_cap(cdp_env, monkeypatch):
    """1,000 changes, a cap of 400 and ties at every page boundary: nothing lost or doubled."""
    with serve("hubspot", None, monkeypatch) as fake:
        fake.search_cap = 400
        base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        fake.add_contact(email="seed@x.com", when=base)
        assert ingest_stream("hubspot", "contacts").rows_loaded == 1
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
        for i in range(1000):
            # groups of 7 share a millisecond, so ties straddle the 200-record pages
            fake.add_contact(email=f"c{i}@x.com", when=later + dt.timedelta(milliseconds=i // 7))
        result = ingest_stream("hubspot", "contacts")
        assert result.status == "ok", result.message
        assert scalar(cdp_env, "select count(distinct id) from raw_hubspot.contacts") == 1001
        assert scalar(cdp_env, "select count(*) from raw_hubspot.contacts") == 1001


def test_hubspot_tie_group_beyond_the_cap_fails_loudly(cdp_env, monkeypatch):
    monkeypatch.setattr(hubspot, "SEARCH_CAP", 400)
    with serve("hubspot", None, monkeypatch) as fake:
        fake.search_cap = 400
        fake.add_contact(email="seed@x.com", when=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        ingest_stream("hubspot", "contacts")
        same = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
        for i in range(450):
            fake.add_contact(email=f"t{i}@x.com", when=same)
        result = ingest_stream("hubspot", "contacts")
        assert result.status == "failed"
        assert "more than 400 records modified at" in result.message
        # what was read before the failure is kept: the next run starts from there
        kept = scalar(cdp_env, "select count(*) from raw_hubspot.contacts")
        assert result.rows_loaded == kept - 1 > 0  # the seed contact came in the first run


def test_stripe_new_and_changed_objects_arrive_next_run(small_demo, cdp_env, monkeypatch):
    with serve("stripe", small_demo, monkeypatch) as fake:
        ingest(sources=["stripe"])
        fake.add_customer(email="new@example.com", metadata={"user_id": "4242"})
        fake.add_charge("cus_186a0", 1999)
        # changes to old objects come from the Events API: the latest snapshot wins
        fake.update_customer("cus_186a0", email="first@example.com")
        fake.update_customer("cus_186a0", email="second@example.com")
        charge = next(iter(fake.charges))
        fake.refund_charge(charge)
        results = {r.stream: r for r in ingest(sources=["stripe"])}
        assert (results["customers"].rows_loaded, results["charges"].rows_loaded) == (2, 2)
        assert scalar(
            cdp_env, "select user_id from raw_stripe.customers where email = 'new@example.com'"
        ) == ("4242")
        got = scalar(cdp_env, "select email from raw_stripe.customers where id = 'cus_186a0'")
        assert got == "second@example.com"
        assert scalar(cdp_env, "select refunded from raw_stripe.charges where id = ?", [charge])
        again = ingest(sources=["stripe"])
        assert [r.rows_loaded for r in again] == [0, 0]
        assert scalar(cdp_env, "select count(*) from raw_stripe.customers") == (
            small_demo.tables["stripe.customers"].height + 1
        )


def test_zendesk_updates_arrive_next_run(small_demo, cdp_env, monkeypatch):
    with serve("zendesk", small_demo, monkeypatch) as fake:
        ingest(sources=["zendesk"])
        fake.update_user(9000001, email="support-new@example.com")
        fake.add("tickets", requester_id=9000001, subject="Help", status="new")
        results = {r.stream: r for r in ingest(sources=["zendesk"])}
        assert (results["users"].rows_loaded, results["tickets"].rows_loaded) == (1, 1)
        assert (
            scalar(cdp_env, "select email from raw_zendesk.users where id = 9000001")
            == "support-new@example.com"
        )


# -- paging boundaries -------------------------------------------------------------------
@pytest.mark.parametrize(("n", "pages"), [(0, 1), (100, 1), (101, 2), (250, 3)])
def test_hubspot_list_paging_boundaries(n, pages, cdp_env, monkeypatch):
    with serve("hubspot", None, monkeypatch) as fake:
        for i in range(n):
            fake.add_contact(email=f"p{i}@x.com")
        result = ingest_stream("hubspot", "contacts")
        assert (result.status, result.pages, result.rows_loaded) == ("ok", pages, n)
        assert scalar(cdp_env, "select count(distinct id) from raw_hubspot.contacts") == n


@pytest.mark.parametrize(("n", "pages"), [(0, 1), (100, 1), (101, 2), (200, 2)])
def test_stripe_paging_boundaries(n, pages, cdp_env, monkeypatch):
    with serve("stripe", None, monkeypatch) as fake:
        for i in range(n):
            fake.add_customer(id=f"cus_{i:05d}", email=f"s{i}@x.com")
        result = ingest_stream("stripe", "customers")
        assert (result.status, result.pages, result.rows_loaded) == ("ok", pages, n)
        assert scalar(cdp_env, "select count(distinct id) from raw_stripe.customers") == n


@pytest.mark.parametrize(("n", "pages"), [(0, 1), (10, 1), (11, 2), (30, 3)])
def test_zendesk_paging_boundaries(n, pages, cdp_env, monkeypatch):
    monkeypatch.setattr(zendesk, "PER_PAGE", 10)
    with serve("zendesk", None, monkeypatch) as fake:
        for i in range(n):
            fake.add_user(email=f"z{i}@x.com", when=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        result = ingest_stream("zendesk", "users")
        assert (result.status, result.pages, result.rows_loaded) == ("ok", pages, n)
        assert scalar(cdp_env, "select count(distinct id) from raw_zendesk.users") == n


# -- drift, bad records, faults, credentials -------------------------------------------------
def test_drift_new_fields_kept_missing_fields_null(cdp_env, monkeypatch):
    with serve("stripe", None, monkeypatch) as fake:
        fake.add_customer(id="cus_a", email="a@x.com", tax_exempt="none", address={"city": "Rome"})
        fake.add_customer(id="cus_b")
        del fake.customers["cus_b"]["metadata"]
        assert ingest_stream("stripe", "customers").rows_loaded == 2
        got = rows(
            cdp_env,
            "select id, email, user_id, _record->'$.address'->>'city' "
            "from raw_stripe.customers order by id",
        )
        assert got == [("cus_a", "a@x.com", None, "Rome"), ("cus_b", None, None, None)]


def test_bad_records_are_quarantined_and_neighbours_load(cdp_env, monkeypatch):
    with serve("stripe", None, monkeypatch) as fake:
        fake.add_charge("cus_1", 100, id="ch_good1")
        fake.add_charge("cus_1", "a lot", id="ch_bad")
        fake.add_charge("cus_1", 300, id="ch_good2")
        no_id = fake.add_charge("cus_1", 400, id="ch_tmp")
        del no_id["id"]
        result = ingest_stream("stripe", "charges")
        assert (result.rows_loaded, result.rows_quarantined) == (2, 2)
        reasons = sorted(r for (r,) in rows(cdp_env, "select reason from ops.quarantine"))
        assert reasons == ["amount: cannot read a lot as bigint", "missing primary key id"]


@pytest.mark.parametrize("vendor", list(VENDOR_TABLES))
def test_ten_percent_faults_and_rate_limits_give_the_same_tables(
    vendor, small_demo, cdp_env, monkeypatch
):
    # small pages: enough requests (~40 per vendor) for faults and the rate limit to bite
    monkeypatch.setattr(zendesk, "PER_PAGE", 10)
    monkeypatch.setattr(hubspot, "LIST_LIMIT", 10)
    monkeypatch.setattr(stripe, "PAGE_LIMIT", 10)
    with serve(vendor, small_demo, monkeypatch, fault_rate=0.1, seed=7, rate_limit=(8, 0.5)) as f:
        f.retry_after_seconds = 0.2
        results = ingest(sources=[vendor])
        assert [r.status for r in results] == ["ok", "ok"], [r.message for r in results]
        for table in VENDOR_TABLES[vendor]:
            assert_raw_equals_source(cdp_env, small_demo, table)
        assert sum(r.retries for r in results) > 0
        assert sum(1 for c in f.calls if c.status >= 429) == sum(r.retries for r in results)
        recorded = scalar(cdp_env, "select sum(retries) from ops.ingest_runs")
        assert recorded == sum(r.retries for r in results)


@pytest.mark.parametrize(
    ("vendor", "variables"),
    [
        ("hubspot", "HUBSPOT_ACCESS_TOKEN"),
        ("stripe", "STRIPE_API_KEY"),
        ("zendesk", "ZENDESK_EMAIL and ZENDESK_API_TOKEN"),
    ],
)
def test_refused_credentials_fail_the_source_naming_the_variable(
    vendor, variables, cdp_env, monkeypatch, caplog
):
    with serve(vendor, None, monkeypatch) as fake:
        wrong = "wrong-secret-value-123"
        var = variables.split(" and ")[-1]
        monkeypatch.setenv(var, wrong)
        results = ingest(sources=[vendor])
        assert [r.status for r in results] == ["failed", "failed"]
        assert "HTTP 401" in results[0].message and variables in results[0].message
        assert len(fake.calls) == 1  # the second stream does not knock again
        for text in [r.message for r in results] + [caplog.text]:
            assert wrong not in text and TOKENS[vendor] not in text
        stored = rows(cdp_env, "select message from ops.ingest_runs")
        assert all(wrong not in m for (m,) in stored)


def test_wrong_base_url_names_the_base_url_variable(cdp_env, monkeypatch):
    with serve("hubspot", None, monkeypatch) as fake:
        monkeypatch.setenv("HUBSPOT_BASE_URL", fake.url + "/nothing-here")
        result = ingest(sources=["hubspot"])[0]
        assert result.status == "failed" and "HUBSPOT_BASE_URL" in result.message


def test_missing_credentials_skip_the_source(cdp_env, monkeypatch):
    monkeypatch.delenv("HUBSPOT_ACCESS_TOKEN", raising=False)
    result = ingest(sources=["hubspot"])[0]
    assert (result.status, result.message) == ("skipped", "HUBSPOT_ACCESS_TOKEN is not set")


def test_hubspot_companies_cursor_uses_hs_lastmodifieddate(small_demo, cdp_env, monkeypatch):
    with serve("hubspot", small_demo, monkeypatch) as fake:
        ingest_stream("hubspot", "companies")
        fake.update_object("companies", "7000001", name="Renamed Inc")
        assert ingest_stream("hubspot", "companies").rows_loaded == 1
        assert scalar(cdp_env, "select name from raw_hubspot.companies where id = '7000001'") == (
            "Renamed Inc"
        )
    assert hubspot.MODIFIED["companies"] == "hs_lastmodifieddate"


def test_stripe_resume_after_a_deleted_object_restarts_the_pass(cdp_env, monkeypatch):
    from connectors.loader import Warehouse
    from connectors.stripe import CUSTOMERS

    with serve("stripe", None, monkeypatch) as fake:
        for i in range(30):
            fake.add_customer(id=f"cus_{i:03d}", email=f"d{i}@x.com")
        with Warehouse(cdp_env) as wh:  # as a killed pass leaves it: stopped after cus_gone
            state = {"since": None, "starting_after": "cus_gone", "events_since": 0}
            wh.load_batch("stripe", CUSTOMERS, [], state, "b0")
        result = ingest_stream("stripe", "customers")
        assert (result.status, result.rows_loaded) == ("ok", 30)


def test_hubspot_contacts_written_by_the_write_routes_are_read_back(cdp_env, monkeypatch):
    """A contact changed only through ``updatedAt`` (as a write route may do) is still found."""
    with serve("hubspot", None, monkeypatch) as fake:
        old = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        contact = fake.add_contact(email="w@x.com", when=old)
        ingest_stream("hubspot", "contacts")
        later = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)).isoformat()
        contact["properties"]["firstname"] = "Written"
        contact["updatedAt"] = later.replace("+00:00", "Z")
        created = {"id": "777", "properties": {"email": "new@x.com"}, "archived": False}
        created["createdAt"] = created["updatedAt"] = contact["updatedAt"]
        fake.contacts["777"] = created
        result = ingest_stream("hubspot", "contacts")
        assert result.rows_loaded == 2
        got = rows(cdp_env, "select id, firstname, email from raw_hubspot.contacts order by id")
        assert got == [("777", None, "new@x.com"), (contact["id"], "Written", "w@x.com")]
