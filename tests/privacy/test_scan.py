"""The scanner finds exactly a person's rows: all of them, and nobody else's."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from connectors.loader import connect
from orchestration.demo.warehouse import load_raw
from orchestration.privacy.normalize import Identifier
from orchestration.privacy.scan import Scanner
from tests.privacy.helpers import clean_people, person_traces


def traces_to_identifiers(demo, person: int) -> list[Identifier]:
    """The identifiers the identity graph would hold for a person, from the ground truth."""
    p = demo.people.filter(pl.col("_person_id") == person).row(0, named=True)
    ids = [Identifier.of("email", p["email"]), Identifier.of("phone", p["phone_e164"])]
    if p["has_work_email"]:
        ids.append(Identifier.of("email", p["work_email"]))
    if p["user_id"] is not None:
        ids.append(Identifier.of("user_id", p["user_id"]))
    own = {n: f.filter(pl.col("_person_id") == person) for n, f in demo.tables.items()}
    for table, id_type in (
        ("zendesk.users", "zendesk_user_id"),
        ("stripe.customers", "stripe_customer_id"),
        ("hubspot.contacts", "hubspot_contact_id"),
    ):
        ids += [Identifier.of(id_type, v) for v in own[table]["id"].to_list()]
    ids += [Identifier.of("anonymous_id", v) for v in own["events.events"]["anonymous_id"].unique()]
    return [i for i in ids if i is not None]


@pytest.fixture(scope="module")
def raw_db(tmp_path_factory, small_demo):
    path = tmp_path_factory.mktemp("scan") / "cdp.duckdb"
    load_raw(path, small_demo)
    return path


def test_scanner_matches_each_persons_rows_exactly(raw_db, small_demo) -> None:
    people = clean_people(small_demo)[:12]
    assert len(people) >= 8
    con = connect(raw_db, read_only=True)
    for person in people:
        truth = person_traces(small_demo, person).rows
        expected = {table: len(keys) for table, keys in truth.items()}
        found = Scanner(con, traces_to_identifiers(small_demo, person)).scan()
        assert found == expected, person


def test_numeric_ids_match_only_where_that_id_type_lives(tmp_path) -> None:
    """User 1015 must not take ticket 1015 or a charge of 1015 cents with it."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("create schema raw_app; create schema raw_zendesk; create schema raw_stripe")
    con.execute(
        "create table raw_app.orders as select * from (values "
        """(1, 1015, '{"id": 1, "user_id": 1015}'), (2, 77, '{"id": 2, "user_id": 77}'))"""
        " t(id, user_id, _record)"
    )
    con.execute(
        "create table raw_zendesk.tickets as select * from (values "
        """(1015, 9000001, 'Login issue', '{"id": 1015, "requester_id": 9000001}'))"""
        " t(id, requester_id, subject, _record)"
    )
    con.execute(
        "create table raw_stripe.charges as select * from (values "
        """('ch_1', 'cus_x', 1015, '{"id": "ch_1", "customer": "cus_x", "amount": 1015}'))"""
        " t(id, customer, amount, _record)"
    )
    scanner = Scanner(con, [Identifier("user_id", "1015")])
    assert scanner.scan() == {"raw_app.orders": 1}
    assert scanner.delete("raw_app.orders") == 1
    assert con.execute("select list(id) from raw_app.orders").fetchone()[0] == [2]


def test_quarantined_records_are_typed_by_the_table_they_were_bound_for(tmp_path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("create schema ops")
    con.execute(
        "create table ops.quarantine as select * from (values "
        """('app', 'users', '{"id": 1015, "created_at": "soon"}', 'bad date'),"""
        """('zendesk', 'tickets', '{"id": 1015, "requester_id": 9000001}', 'bad status'))"""
        " t(source, stream, raw_record, reason)"
    )
    assert Scanner(con, [Identifier("user_id", "1015")]).delete("ops.quarantine") == 1
    left = con.execute("select source from ops.quarantine").fetchall()
    assert left == [("zendesk",)]


def test_identifiers_inside_free_text_and_nested_json_are_found(tmp_path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("create schema ops")
    con.execute(
        "create table ops.quarantine as select * from (values "
        """('{"contact": {"props": {"mail": "  ADA@Example.com"}}}', 'bad date'),"""
        """('please call me on (201) 000-0001, thanks', 'no id'),"""
        """('{"mail": "ada@example.community"}', 'other person'),"""
        """('{"when": "2010-00-00 01"}', 'a date is not a phone'))"""
        " t(raw_record, reason)"
    )
    scanner = Scanner(
        con, [Identifier("email", "ada@example.com"), Identifier("phone", "+12010000001")]
    )
    assert scanner.delete("ops.quarantine") == 2
    left = [r[0] for r in con.execute("select reason from ops.quarantine order by 1").fetchall()]
    assert left == ["a date is not a phone", "other person"]


def test_keys_typed_by_their_row_match_only_that_type(tmp_path) -> None:
    """``record_key`` 1001 of a ticket is not user 1001; ``id_value`` is typed by ``id_type``."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("create schema marts")
    con.execute(
        "create table marts.customer_events as select * from (values "
        "('c1', 'stg_zendesk__tickets', '1001'), ('c2', 'stg_app__users', '1001'), "
        "('c3', 'stg_events__events', 'msg-7')) t(customer_id, record_model, record_key)"
    )
    con.execute(
        "create table marts.customer_identifiers as select * from (values "
        "('c1', 'zendesk_user_id', '1001'), ('c2', 'user_id', '1001')) "
        "t(customer_id, id_type, id_value)"
    )
    scanner = Scanner(con, [Identifier("user_id", "1001"), Identifier("message_id", "msg-7")])
    assert scanner.delete("marts.customer_events") == 2
    assert scanner.delete("marts.customer_identifiers") == 1
    left = con.execute(
        "select (select list(customer_id) from marts.customer_events), "
        "(select list(customer_id) from marts.customer_identifiers)"
    ).fetchone()
    assert left == (["c1"], ["c1"])
