"""Session attribution on shared devices: a page view that carries only a family device's anonymous
id goes to whoever logged in on that device in the same session (the login next to it within the
window; left alone when two people's logins are), never merges the two users and never makes the
device an identifier; with no login in the window it stays a customer of its own. Incremental runs
end where a full rebuild ends, also when a new login claims older views, contests one, or a merge
renames the customer a view went to.

One warehouse, built in stages by a module fixture (dbt builds are the slow part): the base
records, then an increment (a new login on a shared device, a billing record that merges a user
into an older CRM customer), then an incremental run with a narrower window, then a
--full-refresh with the default window.
"""

from __future__ import annotations

import datetime as dt

import pytest

from benchmarks.bench_identity import append_raw
from orchestration.demo.warehouse import load_raw
from tests.identity.scenario import NO_TESTS, build_identity, day, frames, query_all

WINDOW = dt.timedelta(minutes=30)  # the default of var identity_session_window_minutes
MINUTE = dt.timedelta(minutes=1)
SECOND = dt.timedelta(seconds=1)

T1 = day(35)  # user 2001 logs in on the family device
T2 = day(20)  # user 2002 logs in on the same device
LATE = day(10)  # a view with no login near it, until the increment brings one
X = day(60)  # tie device: two logins 10 minutes either side of a view
Y = day(70)  # tie device: a login 40 minutes before (outside), another 5 minutes after a view
Z = day(80)  # tie device: a view 10 minutes after a login; the increment adds another person's


def _login(key: str, user: int, anon: str, at: dt.datetime, person: int) -> dict:
    return {
        "message_id": key,
        "type": "identify",
        "user_id": str(user),
        "anonymous_id": anon,
        "at": at,
        "person": person,
    }


def _view(key: str, anon: str, at: dt.datetime, person: int) -> dict:
    return {"message_id": key, "type": "page", "anonymous_id": anon, "at": at, "person": person}


BASE = {
    "app.users": [
        {"id": 2000 + n, "email": f"a{n}@dev.example", "at": day(300), "person": 20 + n}
        for n in range(1, 6)
    ],
    # older CRM customer of person 25; the increment merges user 2005 into it
    "hubspot.contacts": [
        {
            "id": "60025",
            "email": "work25@acme.example",
            "phone": "+12015550125",
            "at": day(900),
            "person": 25,
        }
    ],
    "events.events": [
        # the family device: two users, two sessions
        _login("login-1", 2001, "anon-fam", T1, 21),
        _login("login-2", 2002, "anon-fam", T2, 22),
        _view("v-before-1", "anon-fam", T1 - 10 * MINUTE, 21),
        _view("v-window-edge", "anon-fam", T1 - WINDOW, 21),
        _view("v-past-edge", "anon-fam", T1 - WINDOW - SECOND, 21),
        _view("v-before-2", "anon-fam", T2 - 5 * MINUTE, 22),
        _view("v-after-2", "anon-fam", T2 + 3 * MINUTE, 22),
        _view("v-days-earlier", "anon-fam", day(50), 21),
        _view("v-late", "anon-fam", LATE, 23),
        # the tie device
        _login("tie-login-4a", 2004, "anon-tie", X - 10 * MINUTE, 24),
        _login("tie-login-5a", 2005, "anon-tie", X + 10 * MINUTE, 25),
        _view("t-tie", "anon-tie", X, 24),
        _login("tie-login-4b", 2004, "anon-tie", Y - 40 * MINUTE, 24),
        _login("tie-login-5b", 2005, "anon-tie", Y + 5 * MINUTE, 25),
        _view("t-nearest", "anon-tie", Y, 25),
        _login("tie-login-4c", 2004, "anon-tie", Z - 10 * MINUTE, 24),
        _view("t-contested", "anon-tie", Z, 24),
    ],
}
INCREMENT = {
    # user 2003 logs in on the family device five minutes after the lonely view
    # user 2005 logs in on the tie device 8 minutes after a view already given to 2004
    "events.events": [
        _login("login-3", 2003, "anon-fam", LATE + 5 * MINUTE, 23),
        _login("tie-login-5c", 2005, "anon-tie", Z + 8 * MINUTE, 25),
    ],
    # billing joins user 2005 (email) to the older CRM contact (phone): 2005's customer id changes
    "stripe.customers": [
        {
            "id": "cus_m25",
            "email": "a5@dev.example",
            "phone": "201-555-0125",
            "at": day(5),
            "person": 25,
        }
    ],
}


def _state(db_path) -> dict:
    got = query_all(
        db_path,
        records="select record_model, record_key, customer_id, attribution, is_unidentified "
        "from identity.int_identity__record_customers",
        identifiers="select customer_id, id_type, id_value, first_seen_at, last_seen_at, sources "
        "from marts.customer_identifiers",
        shared="select id_value from identity.identity_quarantine "
        "where reason = 'shared_identifier' and id_type = 'anonymous_id'",
        merges="select old_customer_id, new_customer_id from identity.identity_merges",
    )
    return {
        "records": sorted(got["records"]),
        "identifiers": sorted(got["identifiers"], key=str),
        "shared": {value for (value,) in got["shared"]},
        "merges": set(got["merges"]),
    }


def _customer(state: dict, model: str, key: str) -> tuple[str, str, bool]:
    (row,) = [r[2:] for r in state["records"] if r[0] == model and r[1] == key]
    return row


def _event(state: dict, key: str) -> tuple[str, str, bool]:
    return _customer(state, "stg_events__events", key)


def _user(state: dict, user: int) -> str:
    customer_id, attribution, _ = _customer(state, "stg_app__users", str(user))
    assert attribution == "identifier"
    return customer_id


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    db_path = tmp_path_factory.mktemp("identity_sessions") / "cdp.duckdb"
    load_raw(db_path, frames(BASE))
    build_identity(db_path, *NO_TESTS)
    before = _state(db_path)
    append_raw(db_path, frames(INCREMENT))
    build_identity(db_path)  # incremental, with the data and unit tests
    incremental = _state(db_path)
    # a narrower window in an incremental run with no new records: the records whose attribution
    # the var changes are redone although no identifier of theirs was touched
    build_identity(db_path, *NO_TESTS, dbt_vars={"identity_session_window_minutes": 5})
    narrow = _state(db_path)
    build_identity(db_path, "--full-refresh", *NO_TESTS)
    full = _state(db_path)
    return {"before": before, "incremental": incremental, "full": full, "narrow": narrow}


def test_views_go_to_the_login_of_their_session(runs) -> None:
    state = runs["full"]
    for view, user in [
        ("v-before-1", 2001),
        ("v-window-edge", 2001),  # exactly the window away: still in the session
        ("v-before-2", 2002),
        ("v-after-2", 2002),  # a view after the login counts too
        ("v-late", 2003),
    ]:
        assert _event(state, view) == (_user(state, user), "session", False), view


def test_views_without_a_login_in_the_window_stay_their_own_customer(runs) -> None:
    state = runs["full"]
    users = {_user(state, 2000 + n) for n in range(1, 6)}
    for view in ("v-past-edge", "v-days-earlier"):
        customer_id, attribution, unidentified = _event(state, view)
        assert (attribution, unidentified) == ("own", True), view
        assert customer_id not in users
    assert _event(runs["before"], "v-late")[1:] == ("own", True)


def test_a_view_between_two_peoples_logins_is_not_guessed(runs) -> None:
    state = runs["full"]
    assert _event(state, "t-tie")[1:] == ("own", True)  # 2004 and 2005 both 10 minutes away
    # the other person's login is outside the window: the one inside names the view
    assert _event(state, "t-nearest")[:2] == (_user(state, 2005), "session")
    # a later login by someone else contests a view already attributed: it goes back to its own
    assert _event(runs["before"], "t-contested")[:2] == (_user(runs["before"], 2004), "session")
    for stage in ("incremental", "full"):
        assert _event(runs[stage], "t-contested")[1:] == ("own", True), stage


def test_two_users_of_one_device_stay_two_customers(runs) -> None:
    state = runs["full"]
    fam = [_user(state, u) for u in (2001, 2002, 2003)]
    assert len(set(fam)) == 3
    assert _user(state, 2004) != _user(state, 2005)
    for login, user in [("login-1", 2001), ("login-2", 2002), ("login-3", 2003)]:
        assert _event(state, login) == (_user(state, user), "identifier", False)


def test_the_shared_device_is_never_an_identifier(runs) -> None:
    for stage in ("before", "incremental", "full"):
        state = runs[stage]
        assert {"anon-fam", "anon-tie"} <= state["shared"], stage
        held = [i for i in state["identifiers"] if i[1] == "anonymous_id"]
        assert not {i[2] for i in held} & {"anon-fam", "anon-tie"}, stage


def test_incremental_run_equals_full_rebuild(runs) -> None:
    for part in ("records", "identifiers"):
        assert runs["incremental"][part] == runs["full"][part], part


def test_a_merge_carries_the_session_views_to_the_kept_customer(runs) -> None:
    before, after = runs["before"], runs["incremental"]
    old_id, kept_id = _user(before, 2005), _user(after, 2005)
    crm_id = _customer(before, "stg_hubspot__contacts", "60025")[0]
    assert kept_id == crm_id != old_id  # the older CRM customer's id survives the merge
    assert (old_id, kept_id) in after["merges"]
    assert _event(before, "t-nearest")[0] == old_id
    assert _event(after, "t-nearest")[0] == kept_id


def test_the_window_is_a_var(runs) -> None:
    state = runs["narrow"]
    assert _event(state, "v-before-1")[1:] == ("own", True)  # 10 minutes > 5
    assert _event(state, "v-before-2") == (_user(state, 2002), "session", False)  # 5 minutes
    assert _event(state, "v-after-2") == (_user(state, 2002), "session", False)
    assert _event(state, "t-nearest") == (_user(state, 2005), "session", False)
    assert _event(state, "t-tie")[1] == "own"  # both logins 10 minutes away
