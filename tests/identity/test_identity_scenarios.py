"""Identity rules on hand-written records: variants link, junk and shared devices don't, limits
hold, ids survive full rebuilds, and a merge keeps the older id and is recorded.

One warehouse is built in stages by a module fixture (dbt builds are the slow part): stage 1,
then stage 2 adds a record that joins two customers. (Ids across --full-refresh and on a fresh
warehouse: test_identity_incremental and test_identity_demo.)
"""

from __future__ import annotations

import pytest

from tests.identity.scenario import NO_TESTS, build, day, query_all

STAGE_1 = {
    "app.users": [
        # normalization variants of one person (Ada)
        {
            "id": 1001,
            "email": "  Ada.Lovelace@Example.COM ",
            "phone": "(201) 555-0101",
            "at": day(400),
            "person": 1,
        },
        # two logged-in users of one family device
        {"id": 1005, "email": "grace@family.example", "at": day(90), "person": 5},
        {"id": 1006, "email": "alan@family.example", "at": day(80), "person": 6},
        # one user who typed many emails over time
        {"id": 1007, "email": "e0@seven.example", "at": day(300), "person": 7},
        # two users linked only through a CRM contact: must end up apart
        {"id": 1008, "email": "x8@eight.example", "at": day(300), "person": 8},
        {
            "id": 1009,
            "email": "nine@nine.example",
            "phone": "201-555-0108",
            "at": day(300),
            "person": 9,
        },
        # the older side of the later merge
        {"id": 1010, "email": "m10@ten.example", "at": day(500), "person": 10},
    ],
    "hubspot.contacts": [
        {
            "id": "50001",
            "email": "ada.lovelace@example.com",
            "phone": "+1 201 555 0101",
            "at": day(300),
            "person": 1,
        },
        {
            "id": "50008",
            "email": "X8@eight.example",
            "phone": "+12015550108",
            "at": day(200),
            "person": 8,
        },
        {
            "id": "50010",
            "email": "work10@acme.example",
            "phone": "+12015550110",
            "at": day(200),
            "person": 10,
        },
    ],
    "zendesk.users": [
        {"id": 9001, "phone": "201.555.0101", "at": day(100), "person": 1},
        # junk reused by unrelated people
        {"id": 9002, "email": "n/a", "phone": "0000000000", "at": day(100), "person": 2},
        {"id": 9003, "email": "test@test.com", "phone": "0000000000", "at": day(100), "person": 3},
    ],
    "stripe.customers": [
        {"id": "cus_junk1", "email": " TEST@test.com", "at": day(100), "person": 4},
    ],
    "events.events": [
        {
            "message_id": "m1",
            "type": "identify",
            "user_id": "1005",
            "anonymous_id": "anon-family",
            "at": day(50),
            "person": 5,
        },
        {
            "message_id": "m2",
            "type": "identify",
            "user_id": "1006",
            "anonymous_id": "anon-family",
            "at": day(40),
            "person": 6,
        },
        {
            "message_id": "m3",
            "type": "page",
            "anonymous_id": "anon-family",
            "at": day(45),
            "person": 5,
        },
        *[
            {
                "message_id": f"e7-{i}",
                "type": "identify",
                "user_id": "1007",
                "email": f"e{i}@seven.example",
                "at": day(200 - i),
                "person": 7,
            }
            for i in range(1, 7)
        ],
    ],
}
# new billing data: the Stripe customer of user 1010 uses the work email HubSpot has
STAGE_2 = {
    **STAGE_1,
    "stripe.customers": [
        *STAGE_1["stripe.customers"],
        {
            "id": "cus_10",
            "email": "work10@acme.example",
            "user_id": "1010",
            "at": day(10),
            "person": 10,
        },
    ],
}


def _snapshot(db_path) -> dict:
    got = query_all(
        db_path,
        records="select record_model, record_key, customer_id "
        "from identity.int_identity__record_customers",
        identifiers="select customer_id, id_type, id_value from marts.customer_identifiers",
        quarantine="select reason, id_type, coalesce(id_value, raw_value), detail "
        "from identity.identity_quarantine",
        merges="select old_customer_id, new_customer_id, merged_at, identifiers "
        "from identity.identity_merges",
    )
    return {**got, "records": {(m, k): c for m, k, c in got["records"]}}


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> dict:
    db_path = tmp_path_factory.mktemp("identity_scenarios") / "cdp.duckdb"
    build(db_path, STAGE_1)
    first = _snapshot(db_path)
    build(db_path, STAGE_2, *NO_TESTS)
    merged = _snapshot(db_path)
    return {"first": first, "merged": merged}


def _customer(snapshot: dict, model: str, key: str) -> str:
    return snapshot["records"][(model, key)]


def test_every_record_gets_exactly_one_customer(stages) -> None:
    records = stages["first"]["records"]
    expected = {("stg_app__users", str(r["id"])) for r in STAGE_1["app.users"]}
    expected |= {("stg_events__events", r["message_id"]) for r in STAGE_1["events.events"]}
    expected |= {("stg_zendesk__users", str(r["id"])) for r in STAGE_1["zendesk.users"]}
    expected |= {("stg_hubspot__contacts", r["id"]) for r in STAGE_1["hubspot.contacts"]}
    expected |= {("stg_stripe__customers", r["id"]) for r in STAGE_1["stripe.customers"]}
    assert set(records) == expected
    assert all(c.startswith("cus_") for c in records.values())


def test_normalization_variants_link(stages) -> None:
    s = stages["first"]
    ada = {
        _customer(s, "stg_app__users", "1001"),
        _customer(s, "stg_hubspot__contacts", "50001"),
        _customer(s, "stg_zendesk__users", "9001"),
    }
    assert len(ada) == 1
    (customer,) = ada
    held = {(t, v) for c, t, v in s["identifiers"] if c == customer}
    assert ("email", "ada.lovelace@example.com") in held
    assert ("phone", "+12015550101") in held
    assert sum(1 for _, t, _ in s["identifiers"] if t == "phone" and "2015550101" in _) <= 1


def test_junk_values_do_not_link(stages) -> None:
    s = stages["first"]
    junk_holders = {
        _customer(s, "stg_zendesk__users", "9002"),
        _customer(s, "stg_zendesk__users", "9003"),
        _customer(s, "stg_stripe__customers", "cus_junk1"),
    }
    assert len(junk_holders) == 3
    values = {v for _, _, v in s["identifiers"]}
    assert not values & {"n/a", "test@test.com", "+10000000000", "0000000000"}
    blocked = {(t, v) for r, t, v, _ in s["quarantine"] if r == "blocked"}
    assert {("email", "n/a"), ("email", "test@test.com"), ("phone", "0000000000")} <= blocked


def test_shared_device_does_not_merge_two_users(stages) -> None:
    s = stages["first"]
    grace = _customer(s, "stg_app__users", "1005")
    alan = _customer(s, "stg_app__users", "1006")
    assert grace != alan
    assert _customer(s, "stg_events__events", "m1") == grace
    assert _customer(s, "stg_events__events", "m2") == alan
    # the device's anonymous page view identifies neither of them
    assert _customer(s, "stg_events__events", "m3") not in {grace, alan}
    assert ("shared_identifier", "anonymous_id", "anon-family", "user_id:2") in s["quarantine"]


def test_limits_hold(stages) -> None:
    s = stages["first"]
    seven = _customer(s, "stg_app__users", "1007")
    emails = sorted(v for c, t, v in s["identifiers"] if c == seven and t == "email")
    # seven emails seen, five allowed: the five seen first stay
    assert emails == sorted(["e0@seven.example", *[f"e{i}@seven.example" for i in range(1, 5)]])
    over = {v for r, t, v, _ in s["quarantine"] if r == "limit_exceeded"}
    assert over == {"e5@seven.example", "e6@seven.example"}
    # the events carrying the held-back emails still belong to the user
    assert _customer(s, "stg_events__events", "e7-6") == seven
    per_customer: dict[str, int] = {}
    for c, t, _ in s["identifiers"]:
        if t == "user_id":
            per_customer[c] = per_customer.get(c, 0) + 1
    assert max(per_customer.values()) == 1


def test_two_user_ids_linked_through_weaker_identifiers_are_split(stages) -> None:
    s = stages["first"]
    assert _customer(s, "stg_app__users", "1008") != _customer(s, "stg_app__users", "1009")
    split = {(t, v) for r, t, v, _ in s["quarantine"] if r == "conflicting_anchors"}
    assert ("hubspot_contact_id", "50008") in split


def test_merge_keeps_the_older_id_and_is_recorded(stages) -> None:
    before, after = stages["first"], stages["merged"]
    older = _customer(before, "stg_app__users", "1010")
    newer = _customer(before, "stg_hubspot__contacts", "50010")
    assert older != newer
    merged = {
        _customer(after, "stg_app__users", "1010"),
        _customer(after, "stg_hubspot__contacts", "50010"),
        _customer(after, "stg_stripe__customers", "cus_10"),
    }
    assert merged == {older}
    assert before["merges"] == []
    ((old_id, new_id, merged_at, identifiers),) = after["merges"]
    assert (old_id, new_id) == (newer, older)
    assert merged_at is not None
    assert "stripe_customer_id:cus_10" in identifiers.split(",")
    # nobody else moved
    unchanged = {k: v for k, v in before["records"].items() if v not in {older, newer}}
    assert all(after["records"][k] == v for k, v in unchanged.items())
