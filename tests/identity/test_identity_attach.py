"""Incremental identity attaches a new identifier to the one component it joins without
re-stitching that component, only when nothing else in it can change; when its anchor or ranks may
change, the component is kept but reordered (its customer and ranks redone). Every stage ends
exactly where a full rebuild of the same records ends.

Node ids are hashes of type and value, and a component is named by its smallest node id, so the
scenario picks anonymous ids whose node id is larger than their customer's component (an
attachable one) by asking DuckDB for the hash, as the models do.
"""

from __future__ import annotations

import duckdb
import pytest

from benchmarks.bench_identity import append_raw
from orchestration.demo.warehouse import load_raw
from tests.identity.scenario import (
    NO_TESTS,
    build_dying_after_components,
    build_identity,
    day,
    frames,
    query_all,
)

STATE = {
    "records": "select record_model, record_key, customer_id "
    "from identity.int_identity__record_customers order by all",
    "identifiers": "select customer_id, id_type, id_value, first_seen_at, last_seen_at, sources "
    "from marts.customer_identifiers order by all",
    "quarantine": "select reason, id_type, id_value, detail from identity.identity_quarantine "
    "order by all",
    "customers": "select component_id, customer_id, customer_first_seen_at, anchor_type, "
    "anchor_value from identity.int_identity__customer_ids order by all",
    "components": "select node_id, component_id, holdback_reason "
    "from identity.int_identity__components order by all",
    "registry": "select id_type, id_value, customer_id from identity.identity_id_registry "
    "order by all",
    "graph": "select node_id, first_seen_at, last_seen_at, sources, record_count, max_loaded_at "
    "from identity.int_identity__identifiers order by all",
}


def _identify(message_id: str, user_id: str, anonymous_id: str, at, person: int) -> dict:
    return {
        "message_id": message_id,
        "type": "identify",
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "at": at,
        "person": person,
    }


def _view(message_id: str, anonymous_id: str, at, person: int) -> dict:
    return {
        "message_id": message_id,
        "type": "page",
        "name": "Home",
        "anonymous_id": anonymous_id,
        "page_path": "/",
        "at": at,
        "person": person,
    }


STAGE_1 = {
    "app.users": [
        {"id": 2001, "email": "one@attach.example", "at": day(300), "person": 1},
        {"id": 2002, "email": "two@attach.example", "at": day(300), "person": 2},
    ],
    "events.events": [
        _identify("m-1a", "2001", "anon-1a", day(200), 1),
        _identify("m-1b", "2001", "anon-1b", day(190), 1),
        _identify("m-2a", "2002", "anon-2a", day(200), 2),
    ],
}


def _anonymous_ids_above(con, component_id: int, prefix: str, count: int) -> list[str]:
    """``count`` anonymous ids whose node id is larger than ``component_id``."""
    found = []
    for i in range(200):
        value = f"{prefix}-{i}"
        (node,) = con.execute("select hash('anonymous_id:' || ?)", [value]).fetchone()
        if node > component_id:
            found.append(value)
        if len(found) == count:
            return found
    raise AssertionError("no attachable anonymous ids")


def _rewritten(db_path) -> dict[str, str]:
    """The identifiers the last run's first pass rewrote, and how: attached, reordered or
    re-stitched."""
    (rows,) = query_all(
        db_path,
        rows="select i.id_value, case when c.attached then 'attached' "
        "when c.reordered then 'reordered' else 're-stitched' end "
        "from identity.int_identity__components_unchecked as c "
        "inner join identity.int_identity__identifiers as i on i.node_id = c.node_id "
        "where c.watermark = "
        "(select max(watermark) from identity.int_identity__components_unchecked)",
    ).values()
    return dict(rows)


def _step_equals_full_rebuild(db_path, rows: dict) -> tuple[dict, dict]:
    """Load ``rows`` (upserted on the id, as the connectors' loader does), build incrementally,
    then rebuild from scratch and check both agree: (the state, how the first pass took each
    identifier)."""
    con = duckdb.connect(str(db_path))
    try:
        for user in rows.get("app.users", []):
            con.execute("delete from raw_app.users where id = ?", [user["id"]])
    finally:
        con.close()
    append_raw(db_path, frames(rows))
    build_identity(db_path, *NO_TESTS)
    incremental = query_all(db_path, **STATE)
    rewritten = _rewritten(db_path)
    build_identity(db_path, "--full-refresh", *NO_TESTS)
    assert query_all(db_path, **STATE) == incremental
    return incremental, rewritten


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> dict:
    db_path = tmp_path_factory.mktemp("identity_attach") / "cdp.duckdb"
    load_raw(db_path, frames(STAGE_1))
    build_identity(db_path, *NO_TESTS)
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        components = dict(
            con.execute(
                "select anchor_value, component_id from identity.int_identity__customer_ids"
            ).fetchall()
        )
        # user 1 holds two anonymous ids: three more reach the limit of five, a fourth passes it
        new_1 = _anonymous_ids_above(con, components["2001"], "anon-1-new", 4)
        # user 2 holds one: three more in a run that dies, then two more
        new_2 = _anonymous_ids_above(con, components["2002"], "anon-2-new", 5)
    finally:
        con.close()
    stage_2 = {
        "events.events": [
            *(_identify(f"m-2-{v}", "2001", v, day(10), 1) for v in new_1[:3]),
            # a known anonymous id seen earlier than known, but after its customer's anchor
            _view("m-2-earlier", "anon-1b", day(250), 1),
        ],
        # user 2 updated: the record is reloaded whole, its identifiers are not counted twice
        "app.users": [{"id": 2002, "email": "two@attach.example", "at": day(300), "person": 2}],
    }
    after_2, rewritten_2 = _step_equals_full_rebuild(db_path, stage_2)
    stage_3 = {
        "events.events": [_identify(f"m-3-{new_1[3]}", "2001", new_1[3], day(5), 1)],
        # a support-desk user of user 2 first seen before that customer's anchor
        "zendesk.users": [{"id": 902, "email": "two@attach.example", "at": day(400), "person": 2}],
    }
    after_3, rewritten_3 = _step_equals_full_rebuild(db_path, stage_3)
    # an anonymous id of user 1 identifies user 2: a merge, re-stitched
    stage_4 = {"events.events": [_identify("m-4", "2002", "anon-1a", day(2), 2)]}
    after_4, rewritten_4 = _step_equals_full_rebuild(db_path, stage_4)
    # a run attaches three ids to user 2 and dies before the customers are redone; the next run
    # must not count user 2's ids from the state that run left behind
    append_raw(
        db_path,
        frames({"events.events": [_identify(f"m-5-{v}", "2002", v, day(1), 2) for v in new_2[:3]]}),
    )
    build_dying_after_components(db_path)
    rewritten_5 = _rewritten(db_path)
    stage_6 = {"events.events": [_identify(f"m-6-{v}", "2002", v, day(0), 2) for v in new_2[3:]]}
    after_6, rewritten_6 = _step_equals_full_rebuild(db_path, stage_6)
    return {
        "new_1": new_1,
        "new_2": new_2,
        "rewritten_5": rewritten_5,
        "after_6": after_6,
        "rewritten_6": rewritten_6,
        "after_2": after_2,
        "rewritten_2": rewritten_2,
        "after_3": after_3,
        "rewritten_3": rewritten_3,
        "after_4": after_4,
        "rewritten_4": rewritten_4,
    }


def test_new_identifiers_of_one_customer_are_attached_alone(stages) -> None:
    new = stages["new_1"][:3]
    # the three new ids are attached; nothing else of the customer was re-stitched (the earlier
    # sighting of anon-1b orders nothing: it is not the anchor and the group is within its limit)
    assert stages["rewritten_2"] == {value: "attached" for value in new}
    customers = {c for c, t, v, *_ in stages["after_2"]["identifiers"] if v in {"2001", *new}}
    assert len(customers) == 1
    first_seen = {v: f for _, _, v, f, *_ in stages["after_2"]["identifiers"]}
    assert first_seen["anon-1b"].date() == day(250).date()


def test_a_new_identifier_over_the_limit_reorders_its_customer(stages) -> None:
    sixth = stages["new_1"][3]
    rewritten = stages["rewritten_3"]
    # not attached alone: the limit counts the ids the customer already holds, so the whole
    # customer is ranked again (its component is kept)
    assert rewritten[sixth] == rewritten["anon-1a"] == rewritten["2001"] == "reordered"
    over = [row for row in stages["after_3"]["quarantine"] if row[2] == sixth]
    assert over and over[0][0] != "shared_identifier"


def test_a_new_identifier_seen_before_the_anchor_re_anchors_its_customer(stages) -> None:
    rewritten = stages["rewritten_3"]
    assert rewritten["902"] == rewritten["anon-2a"] == "reordered"
    anchors = {anchor: t for _, _, _, t, anchor in stages["after_3"]["customers"]}
    assert anchors.get("902") == "zendesk_user_id"
    # the customer kept its id (registered before the new anchor arrived)
    before = {v: c for c, _, v, *_ in stages["after_2"]["identifiers"]}
    after = {v: c for c, _, v, *_ in stages["after_3"]["identifiers"]}
    assert after["two@attach.example"] == before["two@attach.example"] == after["902"]


def test_an_anonymous_id_seen_with_a_second_user_re_stitches_both_customers(stages) -> None:
    rewritten = stages["rewritten_4"]
    assert rewritten["anon-1a"] == rewritten["anon-2a"] == "re-stitched"
    merged = {c for c, _, v, *_ in stages["after_4"]["identifiers"] if v in {"2001", "2002"}}
    # the anonymous id is now shared (two user ids): it leaves user 1 and merges nobody
    assert len(merged) == 2


def test_a_run_after_one_that_died_re_stitches_what_that_run_attached(stages) -> None:
    new = stages["new_2"]
    assert stages["rewritten_5"] == {value: "attached" for value in new[:3]}
    # user 2 now holds six anonymous ids (anon-2a and five new): the latest one is over the limit
    assert stages["rewritten_6"]["anon-2a"] == "re-stitched"
    held = [
        v for c, t, v, *_ in stages["after_6"]["identifiers"] if t == "anonymous_id" and v in new
    ]
    over = [row[2] for row in stages["after_6"]["quarantine"] if row[2] in new]
    assert len(held) == 4 and len(over) == 1


def _customer_of(db_path, model: str, key: str) -> str:
    (rows,) = query_all(
        db_path,
        rows="select customer_id from identity.int_identity__record_customers "
        f"where record_model = '{model}' and record_key = '{key}'",
    ).values()
    assert len(rows) == 1
    return rows[0][0]


def _holders(db_path, value: str, id_type: str = "email") -> list[str]:
    (rows,) = query_all(
        db_path,
        rows="select customer_id from marts.customer_identifiers "
        f"where id_type = '{id_type}' and id_value = '{value}'",
    ).values()
    return [r[0] for r in rows]


def _reupsert_user(db_path, user: dict) -> None:
    """The app user ``user`` loaded again (upserted on its id, as the connectors' loader does)."""
    con = duckdb.connect(str(db_path))
    try:
        con.execute("delete from raw_app.users where id = ?", [user["id"]])
    finally:
        con.close()
    append_raw(db_path, frames({"app.users": [user]}))


def _reload_user(db_path, user: dict) -> list[tuple]:
    """Build STAGE_1, then reload ``user`` and run identity again: the reloads on record."""
    load_raw(db_path, frames(STAGE_1))
    build_identity(db_path, *NO_TESTS)
    _reupsert_user(db_path, user)
    build_identity(db_path, *NO_TESTS)
    (reloads,) = query_all(
        db_path,
        rows="select lost_identifiers from identity.int_identity__record_reloads",
    ).values()
    return reloads


def test_a_record_reloaded_with_a_changed_email_equals_a_full_rebuild(tmp_path) -> None:
    db_path = tmp_path / "cdp.duckdb"
    # user 2 changed their email in the app: the record is reloaded with the new one
    changed = {"id": 2002, "email": "two.new@attach.example", "at": day(300), "person": 2}
    assert _reload_user(db_path, changed) == [(1,)]
    after = query_all(db_path, **STATE)
    rewritten = _rewritten(db_path)
    build_identity(db_path, "--full-refresh", *NO_TESTS)
    assert query_all(db_path, **STATE) == after
    # the run rebuilt the graph: every identifier was re-stitched
    assert set(rewritten.values()) == {"re-stitched"}
    assert len(rewritten) == len(after["graph"])
    # the old email belongs to nobody any more; the new one to the same customer as before
    assert _holders(db_path, "two@attach.example") == []
    # the record keeps its customer (the registry remembers the old email's), now with the new email
    (before,) = query_all(
        db_path,
        rows="select customer_id from identity.identity_id_registry "
        "where id_type = 'email' and id_value = 'two@attach.example'",
    ).values()
    assert _customer_of(db_path, "stg_app__users", "2002") == before[0][0]
    assert _holders(db_path, "two.new@attach.example") == [before[0][0]]


def test_a_reload_that_takes_away_the_only_link_splits_the_customer(tmp_path) -> None:
    db_path = tmp_path / "cdp.duckdb"
    load_raw(db_path, frames(STAGE_1))
    build_identity(db_path, *NO_TESTS)
    # a support-desk user with user 2's email joins user 2 through it
    desk = {"id": 902, "email": "two@attach.example", "at": day(400), "person": 2}
    _step_equals_full_rebuild(db_path, {"zendesk.users": [desk]})
    joined = _customer_of(db_path, "stg_app__users", "2002")
    assert _customer_of(db_path, "stg_zendesk__users", "902") == joined
    # user 2 changes their email: nothing links the desk user to them any more
    changed = {"id": 2002, "email": "two.new@attach.example", "at": day(300), "person": 2}
    _step_equals_full_rebuild(db_path, {"app.users": [changed]})
    app_customer = _customer_of(db_path, "stg_app__users", "2002")
    desk_customer = _customer_of(db_path, "stg_zendesk__users", "902")
    assert app_customer != desk_customer
    # the old email stays with the desk user alone; one side keeps the customer id
    assert _holders(db_path, "two@attach.example") == [desk_customer]
    assert joined in (app_customer, desk_customer)


def test_a_rebuilding_run_that_dies_half_way_is_completed_by_the_next(tmp_path) -> None:
    db_path = tmp_path / "cdp.duckdb"
    load_raw(db_path, frames(STAGE_1))
    build_identity(db_path, *NO_TESTS)
    changed = {"id": 2002, "email": "two.new@attach.example", "at": day(300), "person": 2}
    _reupsert_user(db_path, changed)
    build_dying_after_components(db_path)
    # the next run, with nothing new, finishes the rebuild
    build_identity(db_path, *NO_TESTS)
    incremental = query_all(db_path, **STATE)
    assert _holders(db_path, "two@attach.example") == []
    build_identity(db_path, "--full-refresh", *NO_TESTS)
    assert query_all(db_path, **STATE) == incremental


def test_a_reload_that_keeps_its_identifiers_does_not_rebuild(tmp_path) -> None:
    db_path = tmp_path / "cdp.duckdb"
    # the same email, a later update: nothing is lost, so only the record's identifiers are redone
    same = {"id": 2002, "email": "two@attach.example", "at": day(250), "person": 2}
    assert _reload_user(db_path, same) == [(0,)]
    rewritten = _rewritten(db_path)
    assert "one@attach.example" not in rewritten


def test_a_reload_left_with_no_usable_identifier_loses_its_rows(tmp_path) -> None:
    db_path = tmp_path / "cdp.duckdb"
    view = _view("m-view", "anon-1a", day(150), 1)
    load_raw(db_path, frames({**STAGE_1, "events.events": [*STAGE_1["events.events"], view]}))
    build_identity(db_path, *NO_TESTS)
    user_1 = _customer_of(db_path, "stg_app__users", "2001")
    assert _customer_of(db_path, "stg_events__events", "m-view") == user_1
    # the page view sent again with a placeholder for its only identifier
    con = duckdb.connect(str(db_path))
    try:
        con.execute("delete from raw_events.events where message_id = 'm-view'")
    finally:
        con.close()
    append_raw(db_path, frames({"events.events": [_view("m-view", "n/a", day(150), 1)]}))
    build_identity(db_path, *NO_TESTS)
    (rows,) = query_all(
        db_path,
        rows="select count(*) from identity.int_identity__record_nodes as rn "
        "inner join identity.int_identity__record_customers as rc on rc.record_id = rn.record_id "
        "where rc.record_key = 'm-view'",
    ).values()
    assert rows == [(0,)]
    # a customer of its own now; the anonymous id stays with user 1 through their identify call
    assert _customer_of(db_path, "stg_events__events", "m-view") != user_1
    assert _holders(db_path, "anon-1a", "anonymous_id") == [user_1]
    incremental = query_all(db_path, **STATE)
    build_identity(db_path, "--full-refresh", *NO_TESTS)
    assert query_all(db_path, **STATE) == incremental
