"""The issue's done-when, through the real pipeline: sources over HTTP and files -> connectors ->
dbt -> reverse-ETL syncs into the destination fakes; then ``forget`` one demo person.

Afterwards no table of the warehouse holds any of their identifiers, the destination fakes no
longer hold them, the audit has a receipt per step, and a full re-ingest from sources that still
contain them (cursors reset) brings nothing of theirs back, nor does the next sync.
"""

from __future__ import annotations

import json

import pytest

from connectors.ingest import ingest
from connectors.loader import connect
from orchestration.demo.run import DemoStack
from orchestration.privacy import forget
from reverse_etl.engine import run_syncs
from tests.conftest import AS_OF, REPO_ROOT, run_dbt
from tests.privacy.helpers import clean_people, find_traces, person_traces

VARS = json.dumps({"cdp_as_of": AS_OF.strftime("%Y-%m-%d")})
# models only: the project's own data and unit tests run in tests/test_dbt_project.py
MODELS_ONLY = ("--exclude-resource-type", "test", "--exclude-resource-type", "unit_test")
PROJECT = REPO_ROOT / "dbt_project"


def _build(db) -> None:
    run_dbt(db, "build", *MODELS_ONLY, "--vars", VARS)


def _ingest(db) -> list:
    results = ingest(db)
    failed = [r for r in results if r.status == "failed"]
    assert not failed, [(r.source, r.stream, r.message) for r in failed]
    return results


def _sync(db) -> None:
    results = run_syncs(db_path=db, project_dir=PROJECT)
    assert all(r.status == "success" for r in results), [r.describe() for r in results]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, small_demo):
    tmp = tmp_path_factory.mktemp("forget_e2e")
    db = tmp / "cdp.duckdb"
    stack = DemoStack(data=small_demo, workdir=tmp / "demo").start()
    try:
        _ingest(db)
        _build(db)
        _sync(db)
        yield stack, db
    finally:
        stack.stop()


def held_by_destinations(stack: DemoStack, traces) -> dict[str, int]:
    """How many records each destination fake holds under any of the person's identifiers."""
    hubspot = stack.servers["hubspot"]
    mailchimp = stack.servers["mailchimp"]
    klaviyo = stack.servers["klaviyo"]

    def ours(email: str | None) -> bool:
        return (email or "").strip().lower() in traces.emails

    return {
        "hubspot": sum(
            1
            for cid, c in hubspot.contacts.items()
            if ours(c["properties"].get("email")) or cid in traces.ids
        ),
        "mailchimp": sum(
            1
            for members in mailchimp.members.values()
            for m in members.values()
            if ours(m.get("email_address"))
        ),
        "klaviyo": sum(1 for p in klaviyo.profiles.values() if ours(p["attributes"].get("email"))),
    }


def test_forget_reaches_every_table_every_destination_and_survives_reingest(
    pipeline, small_demo
) -> None:
    stack, db = pipeline
    # a person in every source whom the syncs sent to the most destinations
    candidates = [person_traces(small_demo, p) for p in clean_people(small_demo)]
    traces = max(
        candidates, key=lambda t: sum(v > 0 for v in held_by_destinations(stack, t).values())
    )
    before = held_by_destinations(stack, traces)
    assert before["hubspot"] >= 1 and sum(v > 0 for v in before.values()) >= 2, before
    con = connect(db, read_only=True)
    assert find_traces(con, traces)
    con.close()

    def rebuild(selection: list[str]) -> int:
        run_dbt(db, "build", "--select", *selection, *MODELS_ONLY, "--vars", VARS)
        return 0

    receipt = forget(sorted(traces.emails)[0], db_path=db, rebuild=rebuild)

    assert receipt.ok, receipt.describe()
    con = connect(db, read_only=True)
    assert find_traces(con, traces) == {}
    assert held_by_destinations(stack, traces) == {"hubspot": 0, "mailchimp": 0, "klaviyo": 0}
    audit = con.execute(
        "select step, status, destination, response from ops.privacy_audit where request_id = ?",
        [receipt.request_id],
    ).fetchall()
    steps = {row[0] for row in audit}
    assert {
        "resolve",
        "suppress",
        "delete_rows",
        "scan",
        "destination",
        "rebuild",
        "verify",
        "complete",
    } <= steps
    called = {row[2] for row in audit if row[0] == "destination" and row[1] == "ok"}
    assert called == {"hubspot", "mailchimp", "klaviyo"}
    for *_, response in audit:
        assert not any(e in (response or "").lower() for e in traces.emails)
    con.close()

    # the sources still hold them: a full re-read (cursors reset) must not bring them back
    con = connect(db)
    con.execute("delete from ops.connector_state")
    con.close()
    results = _ingest(db)
    assert sum(r.rows_suppressed for r in results) >= sum(
        len(keys)
        for table, keys in traces.rows.items()
        # forget deleted them in these sources too (destinations as well; the event files are
        # rewritten without them)
        if not table.startswith(("raw_hubspot", "raw_mailchimp", "raw_klaviyo", "raw_events"))
    ) - len(traces.rows.get("raw_app.orders", ())) - len(traces.rows.get("raw_stripe.charges", ()))
    _build(db)
    _sync(db)
    con = connect(db, read_only=True)
    assert find_traces(con, traces) == {}
    con.close()
    assert held_by_destinations(stack, traces) == {"hubspot": 0, "mailchimp": 0, "klaviyo": 0}


SENDING_WRITES = {"subscribe", "tag", "import", "list_post"}


def _gated_syncs():
    from reverse_etl.config import load_syncs

    syncs = [s for s in load_syncs(PROJECT) if s.purpose == "email_marketing"]
    assert {s.destination for s in syncs} >= {"mailchimp", "klaviyo"}
    return syncs


def _held_by_sync(stack: DemoStack, sync) -> set[str]:
    server = stack.servers[sync.destination]
    if sync.destination == "mailchimp":
        return set(server.tagged(sync.options["audience"], sync.options["tag"]))
    return set(server.list_profiles(sync.options["list_name"]))


def _model_consent(db, sync) -> dict[str, bool]:
    con = connect(db, read_only=True)
    try:
        rows = con.execute(
            f"select lower(m.{sync.identity_key}), coalesce(c.email_marketing_consent, false) "
            f"from {sync.model} as m join marts.customers as c using (customer_id)"
        ).fetchall()
    finally:
        con.close()
    return dict(rows)


def _consent_event(stack: DemoStack, user_id: str, granted: bool, at, n: int) -> None:
    """What a preference centre sends through the collector: a Segment track call."""
    message = {
        "type": "track",
        "event": "Consent Updated",
        "messageId": f"consent-test-{n}-{user_id}",
        "userId": user_id,
        "anonymousId": f"anon-consent-test-{n}",
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "properties": {"categories": {"email_marketing": granted, "sms": False}},
    }
    path = stack.workdir / "events" / f"consent-{n:03d}.jsonl"
    path.write_text(json.dumps(message) + "\n")


def test_email_consent_gates_every_mirror_run_both_ways(pipeline, small_demo) -> None:
    import datetime as dt

    stack, db = pipeline
    syncs = _gated_syncs()
    mailchimp = next(s for s in syncs if s.destination == "mailchimp")
    con = connect(db, read_only=True)
    people = con.execute(
        f"select lower(m.email), c.email_marketing_consent, i.id_value "
        f"from {mailchimp.model} as m join marts.customers as c using (customer_id) "
        "join marts.customer_identifiers as i on i.customer_id = m.customer_id "
        "and i.id_type = 'user_id' order by 1"
    ).fetchall()
    con.close()
    granted = next((e, u) for e, c, u in people if c)
    refused = next((e, u) for e, c, u in people if not c)
    log = stack.servers["mailchimp"].write_log

    def check_gate() -> None:
        for sync in syncs:
            consent = _model_consent(db, sync)
            held = _held_by_sync(stack, sync)
            assert held == {e for e, ok in consent.items() if ok}, sync.name

    check_gate()
    assert granted[0] in _held_by_sync(stack, mailchimp)
    assert refused[0] not in _held_by_sync(stack, mailchimp)
    # each round flips both people. Decisions are stamped with the wall clock, not the pinned
    # "now": the email-tool fakes stamp the sync's own unsubscribes (which the next ingest reads
    # back as a withdrawal) with the wall clock, and a re-grant must come after them, as in life
    for n, (a_ok, b_ok) in enumerate([(False, True), (True, False)], start=1):
        at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        _consent_event(stack, granted[1], a_ok, at, 2 * n)
        _consent_event(stack, refused[1], b_ok, at, 2 * n + 1)
        mark = len(log)
        _ingest(db)
        _build(db)
        _sync(db)
        check_gate()
        held = _held_by_sync(stack, mailchimp)
        assert (granted[0] in held, refused[0] in held) == (a_ok, b_ok)
        # who has withdrawn was not written to in a sending way in this run
        for email, ok in ((granted[0], a_ok), (refused[0], b_ok)):
            writes = {op for _, op, e in log[mark:] if e == email}
            assert ok or not writes & SENDING_WRITES, (email, writes)
    # a further run with no change sends nothing to anyone
    mark = len(log)
    _sync(db)
    assert log[mark:] == []
    # the audit trail: every consent change and every sync run is queryable in the warehouse
    con = connect(db, read_only=True)
    changes = con.execute(
        "select c.email, l.granted from marts.consent_ledger as l "
        "join marts.customers as c using (customer_id) "
        "where l.record_key like 'consent-test-%' and l.purpose = 'email_marketing' "
        "order by l.decided_at, c.email"
    ).fetchall()
    assert changes == sorted([(granted[0], False), (refused[0], True)]) + sorted(
        [(granted[0], True), (refused[0], False)]
    )
    runs = con.execute(
        "select count(*) from ops.sync_runs where sync_name = ?", [mailchimp.name]
    ).fetchone()[0]
    assert runs >= 4  # the first run, two consent rounds, the idle run
    con.close()
