"""Identity resolution on generated demo data: every record resolved once, the generator's truth
recovered, ids a pure function of the data, and links explainable record by record."""

from __future__ import annotations

import duckdb
import pytest

from benchmarks.bench_identity import score
from orchestration.demo.warehouse import load_raw
from orchestration.identity_explain import UnknownIdentifier, customer_identifiers, explain
from tests.identity.scenario import NO_TESTS, build_identity

STAGING = {
    "stg_app__users": "app.users",
    "stg_hubspot__contacts": "hubspot.contacts",
    "stg_stripe__customers": "stripe.customers",
    "stg_zendesk__users": "zendesk.users",
    "stg_events__events": "events.events",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory, small_demo):
    db_path = tmp_path_factory.mktemp("identity_demo") / "cdp.duckdb"
    load_raw(db_path, small_demo)
    build_identity(db_path)  # with the data and unit tests
    return db_path


def _records(db_path) -> dict:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return {
            (m, k): c
            for m, k, c in con.execute(
                "select record_model, record_key, customer_id "
                "from identity.int_identity__record_customers"
            ).fetchall()
        }
    finally:
        con.close()


def test_every_identity_record_resolves_to_one_customer(built, small_demo) -> None:
    records = _records(built)
    for model, table in STAGING.items():
        count = sum(1 for m, _ in records if m == model)
        assert count == small_demo.tables[table].height, model


def test_truth_is_recovered_without_over_merging(built, small_demo) -> None:
    accuracy = score(built, small_demo)
    assert accuracy.truth_people_per_customer_max == 1
    assert accuracy.junk_merges == 0
    assert accuracy.precision >= 0.995
    assert accuracy.recall >= 0.95


def test_no_customer_holds_two_user_ids(built) -> None:
    con = duckdb.connect(str(built), read_only=True)
    try:
        worst = con.execute(
            "select max(n) from (select customer_id, count(*) as n from marts.customer_identifiers "
            "where id_type = 'user_id' group by customer_id)"
        ).fetchone()[0]
    finally:
        con.close()
    assert worst == 1


def test_ids_are_a_function_of_the_data(built, small_demo, tmp_path) -> None:
    # a fresh warehouse (no registry) with the same records mints the same ids
    fresh = tmp_path / "fresh.duckdb"
    load_raw(fresh, small_demo)
    build_identity(fresh, *NO_TESTS)
    assert _records(fresh) == _records(built)


def _linked_pair(db_path) -> tuple[str, str, str]:
    """An email and a Zendesk id of one customer whose records are in different sources."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return con.execute(
            """
            select e.id_value, z.id_value, e.customer_id
            from marts.customer_identifiers as e
            inner join marts.customer_identifiers as z on z.customer_id = e.customer_id
            inner join marts.customer_identifiers as u on u.customer_id = e.customer_id
            where e.id_type = 'email' and z.id_type = 'zendesk_user_id'
                and u.id_type = 'user_id' and e.sources not like '%zendesk%'
            order by e.id_value
            limit 1
            """
        ).fetchone()
    finally:
        con.close()


def test_explain_gives_the_chain_of_records(built) -> None:
    email, zendesk_id, _ = _linked_pair(built)
    steps = explain(built, f"email:{email}", f"zendesk_user_id:{zendesk_id}")
    assert steps
    assert steps[0]["from"] == f"email:{email}"
    assert steps[-1]["to"] == f"zendesk_user_id:{zendesk_id}"
    for before, after in zip(steps, steps[1:], strict=False):
        assert before["to"] == after["from"]
    con = duckdb.connect(str(built), read_only=True)
    try:
        for step in steps:
            held = {
                f"{t}:{v}"
                for t, v in con.execute(
                    "select i.id_type, i.id_value from identity.int_identity__record_nodes as rn "
                    "inner join identity.int_identity__identifiers as i on i.node_id = rn.node_id "
                    "inner join identity.int_identity__record_customers as rc "
                    "on rc.record_id = rn.record_id "
                    "where rc.record_model = ? and rc.record_key = ?",
                    [step["record_model"], step["record_key"]],
                ).fetchall()
            }
            assert {step["from"], step["to"]} <= held, step
    finally:
        con.close()


def test_explain_takes_raw_spellings_and_rejects_strangers(built) -> None:
    email, zendesk_id, customer = _linked_pair(built)
    assert explain(built, f"  {email.upper()} ", zendesk_id)
    profile = customer_identifiers(built, email.upper())
    assert profile["customer_id"] == customer
    assert {"id_type": "zendesk_user_id", "id_value": zendesk_id} in [
        {k: i[k] for k in ("id_type", "id_value")} for i in profile["identifiers"]
    ]
    with pytest.raises(UnknownIdentifier):
        explain(built, "email:nobody@nowhere.example", f"email:{email}")


def test_portable_components_match_the_duckdb_fast_path(built, small_demo, tmp_path) -> None:
    # the recursive-CTE default other adapters use, run here on DuckDB, finds the same components
    portable = tmp_path / "portable.duckdb"
    load_raw(portable, small_demo)
    build_identity(portable, *NO_TESTS, dbt_vars={"identity_components_impl": "portable"})
    query = "select node_id, component_id, holdback_reason from identity.int_identity__components"
    results = []
    for db_path in (built, portable):
        con = duckdb.connect(str(db_path), read_only=True)
        try:
            results.append(sorted(con.execute(query).fetchall(), key=str))
        finally:
            con.close()
    assert results[0] == results[1]
    assert _records(portable) == _records(built)
