"""``forget`` on a built warehouse: the person is gone from every table, with a receipt per step.

The warehouse is the generator's company loaded raw and built by dbt, plus the operational
tables other packages write (a quarantined record of the person, sync state naming them). The
check is an independent scan of every cell of every table and view of every schema for every
identifier the person's records carried, in each case and format the sources held.
"""

from __future__ import annotations

import json
import shutil

import duckdb
import polars as pl
import pytest

from connectors.loader import Warehouse, connect
from orchestration.demo.warehouse import load_raw
from orchestration.privacy import forget, process_deletion_requests, submit_deletion_request
from orchestration.privacy.normalize import Identifier, parse_identifier
from orchestration.privacy.resolve import resolve
from orchestration.serve.profiles import lookup
from orchestration.serve.snapshot import refresh
from reverse_etl.state import ensure_tables as ensure_sync_tables
from tests.conftest import AS_OF, run_dbt
from tests.privacy.helpers import clean_people, find_traces, person_traces

VARS = json.dumps({"cdp_as_of": AS_OF.strftime("%Y-%m-%d")})
# models only: the project's own data and unit tests run in tests/test_dbt_project.py
MODELS_ONLY = ("--exclude-resource-type", "test", "--exclude-resource-type", "unit_test")


def dbt_rebuild(db_path):
    def rebuild(selection: list[str]) -> int:
        run_dbt(db_path, "build", "--select", *selection, *MODELS_ONLY, "--vars", VARS)
        return 0

    return rebuild


@pytest.fixture(scope="module")
def built(tmp_path_factory, small_demo):
    """A built warehouse, plus a quarantined record and sync state of the first clean person."""
    db = tmp_path_factory.mktemp("forget") / "cdp.duckdb"
    load_raw(db, small_demo)
    run_dbt(db, "build", *MODELS_ONLY, "--vars", VARS)
    person = clean_people(small_demo)[0]
    contact = small_demo.tables["hubspot.contacts"].filter(pl.col("_person_id") == person)
    record = contact.drop("_person_id").row(0, named=True)
    record = {k: str(v) for k, v in record.items()} | {"createdate": "yesterday-ish"}
    with Warehouse(db) as wh:
        wh.con.execute(
            "insert into ops.quarantine values ('hubspot', 'contacts', ?, 'bad createdate', "
            "'b1', now())",
            [json.dumps({"properties": record})],
        )
        wh.con.execute(
            "insert into ops.quarantine values ('hubspot', 'contacts', '{\"id\": \"x\"}', "
            "'someone else', 'b1', now())"
        )
        ensure_sync_tables(wh.con)
        email = record["email"].strip().lower()
        customer = wh.con.execute(
            "select customer_id from marts.customer_identifiers where id_value = ?", [email]
        ).fetchone()[0]
        wh.con.execute(
            "insert into ops.sync_runs (run_id, sync_name, destination, status, started_at) "
            "values ('r1', 'hubspot_contacts', 'hubspot', 'success', now())"
        )
        wh.con.execute(
            "insert into ops.sync_state select 'hubspot_contacts', customer_id, md5(customer_id), "
            "null, now() from marts.customers"
        )
    return db, person, customer


@pytest.fixture
def warehouse(built, tmp_path):
    db, person, customer = built
    copy = tmp_path / "cdp.duckdb"
    shutil.copy(db, copy)
    return copy, person, customer


def _count(db, sql: str) -> int:
    con = connect(db, read_only=True)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def test_forget_leaves_no_trace_in_any_table_and_keeps_a_receipt_per_step(
    warehouse, small_demo
) -> None:
    db, person, customer = warehouse
    traces = person_traces(small_demo, person)
    con = connect(db, read_only=True)
    before = find_traces(con, traces)
    con.close()
    schemas = {k.split(".")[0] for k in before}
    assert {"raw_app", "raw_events", "staging", "identity", "marts", "ops"} <= schemas
    raw_before = {t: _count(db, f"select count(*) from {t}") for t in traces.rows}
    # the collector serves profiles from a snapshot of the marts: it must forget them too
    snapshots = db.parent / "snapshot"
    refresh(db, snapshots)
    refresh(db, snapshots)
    assert lookup(sorted(traces.emails)[0], snapshots) is not None
    customers_before = _count(db, "select count(*) from marts.customers")

    # the email as someone might type it: another case, padded
    typed = "  " + sorted(traces.emails)[0].upper() + " "
    receipt = forget(typed, db_path=db, destinations=False, rebuild=dbt_rebuild(db))

    assert receipt.ok, receipt.describe()
    con = connect(db, read_only=True)
    assert find_traces(con, traces) == {}
    assert lookup(sorted(traces.emails)[0], snapshots) is None
    versions = [p for p in snapshots.glob("v-*") if p.is_dir()]
    assert len(versions) == 1  # no older version keeps them
    files = duckdb.connect()
    for parquet in versions[0].glob("*.parquet"):
        files.execute(f"create view \"{parquet.stem}\" as from read_parquet('{parquet}')")
    assert files.execute("select count(*) from customers").fetchone()[0] == customers_before - 1
    assert find_traces(files, traces) == {}
    # the person's rows went, nobody else's
    for table, keys in traces.rows.items():
        assert _count(db, f"select count(*) from {table}") == raw_before[table] - len(keys), table
    assert _count(db, "select count(*) from marts.customers") == customers_before - 1
    assert _count(db, "select count(*) from ops.quarantine") == 1
    assert _count(db, "select count(*) from ops.sync_state") == customers_before - 1

    audit = con.execute(
        "select step, status, table_name, rows_affected, identifiers, detail "
        'from ops.privacy_audit where request_id = ? order by "at"',
        [receipt.request_id],
    ).fetchall()
    steps = [row[0] for row in audit]
    assert steps[0] == "resolve" and steps[-1] == "complete"
    for step in ("suppress", "delete_rows", "scan", "destination", "rebuild", "snapshot", "verify"):
        assert step in steps, step
    deleted = {row[2]: row[3] for row in audit if row[0] == "delete_rows"}
    for table, keys in traces.rows.items():
        assert deleted[table] == len(keys), table
    assert deleted["ops.quarantine"] == 1 and deleted["marts.customers"] == 1
    assert {row[1] for row in audit} <= {"ok", "skipped"}
    # receipts name identifiers by hash only
    listed = json.loads(audit[0][4])
    assert listed and all(len(i.split(":")[1]) == 64 for i in listed)
    suppressed = con.execute(
        "select count(*) from ops.suppression_list where request_id = ?", [receipt.request_id]
    ).fetchone()[0]
    assert suppressed >= 1 + len(traces.ids)  # email, phone and every id
    request = con.execute(
        "select status, identifier from ops.deletion_requests where request_id = ?",
        [receipt.request_id],
    ).fetchone()
    assert request == ("done", None)
    con.close()


def test_every_kind_of_identifier_resolves_to_the_same_person(warehouse, small_demo) -> None:
    db, person, customer = warehouse
    traces = person_traces(small_demo, person)
    p = small_demo.people.filter(pl.col("_person_id") == person).row(0, named=True)
    con = connect(db, read_only=True)
    typed_forms = [
        sorted(traces.emails)[0],
        p["phone_digits"][:3] + "." + p["phone_digits"][3:6] + "." + p["phone_digits"][6:],
        f"user_id:{p['user_id']}",
        next(i for i in traces.ids if i.startswith("anon-")),
        next(i for i in traces.ids if i.startswith("cus_")),
        f"customer_id:{customer}",
    ]
    for form in typed_forms:
        assert resolve(con, parse_identifier(form)).customer_ids == [customer], form
    assert resolve(con, parse_identifier("nobody@nowhere.example")).customer_ids == []
    con.close()


def test_deletion_requests_from_table_and_file_are_processed_and_closed(
    warehouse, small_demo, tmp_path
) -> None:
    db, *_ = warehouse
    first, second = clean_people(small_demo)[1:3]
    t1, t2 = person_traces(small_demo, first), person_traces(small_demo, second)
    submit_deletion_request(sorted(t1.emails)[0], db)
    request_file = tmp_path / "requests.jsonl"
    request_file.write_text(
        json.dumps({"identifier": sorted(t2.emails)[0]}) + "\n\nnobody@nowhere.example\n"
    )
    rebuilds: list[list[str]] = []  # the dbt rebuild itself is exercised by the test above

    def rebuild(selection: list[str]) -> int:
        rebuilds.append(selection)
        return 0

    receipts = process_deletion_requests(
        db, files=[request_file], destinations=False, rebuild=rebuild
    )
    assert len(receipts) == 3 and all(r.ok for r in receipts)
    assert request_file.read_text() == ""  # the raw identifiers do not linger on disk
    con = connect(db, read_only=True)
    rows = con.execute(
        "select source, status, identifier from ops.deletion_requests order by requested_at"
    ).fetchall()
    assert sorted(r[1] for r in rows) == ["done", "done", "not_found"]
    assert all(r[2] is None for r in rows)
    assert {r[0] for r in rows} == {"table", "file:requests.jsonl"}
    assert find_traces(con, t1) == {} and find_traces(con, t2) == {}
    # one rebuild served the batch, downstream of every raw table that lost rows
    assert len(rebuilds) == 1
    assert {f"source:{t}+" for t in (*t1.rows, *t2.rows)} <= set(rebuilds[0])
    receipts_of_rebuild = con.execute(
        "select count(*) from ops.privacy_audit where step = 'rebuild' and status = 'ok'"
    ).fetchone()[0]
    assert receipts_of_rebuild == 3  # each request has its receipt of it
    con.close()
    assert process_deletion_requests(db, destinations=False, rebuild=None) == []


def test_consent_ledger_keeps_every_decision_and_the_profile_the_latest(built, small_demo) -> None:
    """Issue 8's ledger contract, checked on the profiles package's model."""
    db, *_ = built
    con = connect(db, read_only=True)
    incomplete = con.execute(
        "select count(*) from marts.consent_ledger where customer_id is null or purpose is null "
        "or channel is null or granted is null or decided_at is null or source is null"
    ).fetchone()[0]
    assert incomplete == 0
    assert {
        r[0] for r in con.execute("select distinct source from marts.consent_ledger").fetchall()
    } == {"app", "hubspot", "events", "mailchimp", "klaviyo"}
    # every consent event of the sources is a decision per purpose it names (email and sms)
    events = small_demo.tables["events.events"].filter(pl.col("event") == "Consent Updated")
    from_events = con.execute(
        "select count(*) from marts.consent_ledger where source = 'events'"
    ).fetchone()[0]
    assert from_events == 2 * events.height
    # every product account and CRM contact with a recorded choice is a decision
    users = small_demo.tables["app.users"]
    contacts = small_demo.tables["hubspot.contacts"]
    by_source = dict(
        con.execute("select source, count(*) from marts.consent_ledger group by 1").fetchall()
    )
    assert by_source["app"] == users["marketing_opt_in"].drop_nulls().len()
    assert by_source["hubspot"] == contacts["hs_email_optout"].drop_nulls().len()
    # email tools: unsubscribes, and subscriptions not written through the tool's API
    members = small_demo.tables["mailchimp.members"]
    profiles = small_demo.tables["klaviyo.profiles"]
    assert (
        by_source["mailchimp"]
        == members.filter(
            (pl.col("status") == "unsubscribed")
            | ((pl.col("status") == "subscribed") & (pl.col("source") != "API - Generic"))
        ).height
    )
    consent = pl.col("email_marketing_consent")
    assert (
        by_source["klaviyo"]
        == profiles.filter(
            (consent == "UNSUBSCRIBED")
            | ((consent == "SUBSCRIBED") & (pl.col("email_marketing_method") != "API"))
        ).height
    )
    # the profile carries the latest decision per purpose (no decision: no consent)
    mismatched = con.execute(
        """
        with latest as (
            select customer_id, granted,
                   row_number() over (partition by customer_id order by decided_at desc) as n
            from marts.consent_ledger where purpose = 'email_marketing'
        )
        select count(*) from marts.customers as c
        left join latest as l on l.customer_id = c.customer_id and l.n = 1
        where c.email_marketing_consent is distinct from coalesce(l.granted, false)
        """
    ).fetchone()[0]
    assert mismatched == 0
    con.close()


def test_records_loaded_since_the_last_build_are_forgotten_and_their_new_ids_suppressed(
    warehouse, small_demo
) -> None:
    """The graph has not seen them yet: their rows go through the ids they share with it."""
    db, person, _ = warehouse
    p = small_demo.people.filter(pl.col("_person_id") == person).row(0, named=True)
    other = small_demo.people.filter(pl.col("_person_id") == clean_people(small_demo)[5]).row(
        0, named=True
    )
    new_email = f"Fresh.Address.{person}@new.example"
    con = connect(db)
    # an identify with a new address, a support user under only that address, and a billing
    # record carrying a junk address that belongs to nobody
    con.execute(
        "insert into raw_events.events (message_id, type, user_id, anonymous_id, email, "
        "properties, _record, _loaded_at, _batch_id) values ('late-1', 'identify', ?, 'anon-late', "
        "?, '{}', '{}', now(), 'late')",
        [str(p["user_id"]), new_email],
    )
    con.execute(
        "insert into raw_zendesk.users (id, email, _record, _loaded_at, _batch_id) "
        "values (9999001, ?, '{}', now(), 'late')",
        [new_email.upper()],
    )
    con.execute(
        "insert into raw_stripe.customers (id, email, user_id, _record, _loaded_at, _batch_id) "
        "values ('cus_late1', 'test@test.com', ?, '{}', now(), 'late'), "
        "('cus_late2', 'test@test.com', ?, '{}', now(), 'late')",
        [str(p["user_id"]), str(other["user_id"])],
    )
    con.close()

    receipt = forget(p["email"], db_path=db, destinations=False, rebuild=None)

    assert receipt.ok, receipt.describe()
    con = connect(db, read_only=True)
    left = con.execute(
        "select (select count(*) from raw_events.events where message_id = 'late-1'), "
        "(select count(*) from raw_zendesk.users where id = 9999001), "
        "(select list(id) from raw_stripe.customers where id like 'cus_late%')"
    ).fetchone()
    assert left == (0, 0, ["cus_late2"])
    suppressed = {
        h for (h,) in con.execute("select id_value_hash from ops.suppression_list").fetchall()
    }
    assert Identifier.of("email", new_email).hash in suppressed
    assert Identifier.of("anonymous_id", "anon-late").hash in suppressed
    assert Identifier.of("email", "test@test.com").hash not in suppressed
    assert Identifier.of("user_id", other["user_id"]).hash not in suppressed
    con.close()
