"""Email-tool status in the consent ledger, end to end: fakes over HTTP -> connectors -> dbt ->
consent-gated mirror syncs back into the same fakes.

- a person who granted in the app and later unsubscribed in Mailchimp is no longer sent to any
  email destination (the mirror run after the ingest removes and unsubscribes them);
- a re-grant in the app after that unsubscribe wins again (sent and subscribed again);
- our own syncs' subscriptions read back by the next ingest are not consent: a withdrawal in the
  app dated before the sync subscribed the person still holds, also when the sync re-subscribed a
  member a sign-up form once added (Mailchimp keeps the form as the member's source).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3

import pytest

from connectors.ingest import ingest
from connectors.loader import connect
from orchestration.demo.run import DemoStack
from reverse_etl.config import load_syncs
from reverse_etl.engine import run_syncs
from tests.conftest import AS_OF, REPO_ROOT, run_dbt

VARS = json.dumps({"cdp_as_of": AS_OF.strftime("%Y-%m-%d")})
MODELS_ONLY = ("--exclude-resource-type", "test", "--exclude-resource-type", "unit_test")
PROJECT = REPO_ROOT / "dbt_project"


def _ingest_build(db) -> None:
    failed = [r for r in ingest(db) if r.status == "failed"]
    assert not failed, [(r.source, r.stream, r.message) for r in failed]
    run_dbt(db, "build", *MODELS_ONLY, "--vars", VARS)


def _sync(db) -> None:
    results = run_syncs(db_path=db, project_dir=PROJECT)
    assert all(r.status == "success" for r in results), [r.describe() for r in results]


def _cycle(db) -> None:
    """One pipeline run: ingest every source, build the models, run every sync."""
    _ingest_build(db)
    _sync(db)


def _held(stack: DemoStack, sync) -> set[str]:
    server = stack.servers[sync.destination]
    if sync.destination == "mailchimp":
        return set(server.tagged(sync.options["audience"], sync.options["tag"]))
    return set(server.list_profiles(sync.options["list_name"]))


def _query(db, sql: str, params: list | None = None) -> list[tuple]:
    con = connect(db, read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _consent(db, email: str) -> tuple[bool, str | None]:
    return _query(
        db,
        "select email_marketing_consent, email_marketing_consent_source from marts.customers "
        "where customer_id = (select customer_id from marts.customer_identifiers "
        "where id_type = 'email' and id_value = ?)",
        [email],
    )[0]


def _set_app_opt_in(user_id: str, granted: bool, at: dt.datetime) -> None:
    """The product's settings page: the checkbox changes and the row's updated_at with it."""
    path = os.environ["CDP_APP_DB_URL"].removeprefix("sqlite:///")
    con = sqlite3.connect(path)
    try:
        con.execute(
            "update users set marketing_opt_in = ?, updated_at = ? where id = ?",
            [int(granted), at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00"), user_id],
        )
        con.commit()
    finally:
        con.close()


@pytest.fixture
def pipeline(tmp_path, small_demo, cdp_env):
    stack = DemoStack(data=small_demo, workdir=tmp_path / "demo").start()
    try:
        yield stack, cdp_env
    finally:
        stack.stop()


def test_email_tool_unsubscribes_gate_syncs_and_app_regrants_win_but_sync_echoes_do_not(
    pipeline,
) -> None:
    stack, db = pipeline
    syncs = [s for s in load_syncs(PROJECT) if s.purpose == "email_marketing"]
    mailchimp = next(s for s in syncs if s.destination == "mailchimp")
    klaviyo = next(s for s in syncs if s.destination == "klaviyo")
    audience = mailchimp.options["audience"]
    before_first_sync = dt.datetime.now(dt.UTC)
    _ingest_build(db)

    # consented people the syncs will send, with their product user id
    sent = {
        s.name: _query(
            db,
            f"select lower(m.email), i.id_value from {s.model} as m "
            "join marts.customers as c using (customer_id) "
            "join marts.customer_identifiers as i on i.customer_id = m.customer_id "
            "and i.id_type = 'user_id' where c.email_marketing_consent order by 1",
        )
        for s in syncs
    }
    person, person_user = sent[mailchimp.name][0]
    # the person signed up through the sync audience's own form before the first sync
    stack.servers["mailchimp"].add_list(audience)
    stack.servers["mailchimp"].person_subscribes(audience, person)
    _sync(db)
    # two people our syncs subscribed (Klaviyo: not subscribed there before)
    k_echo, k_user = next(
        (e, u)
        for e, u in sent[klaviyo.name]
        if e != person and stack.servers["klaviyo"].profile(e)["marketing"]["method"] == "API"
    )
    m_echo, m_user = next((e, u) for e, u in sent[mailchimp.name] if e not in (person, k_echo))
    assert {person, m_echo} <= _held(stack, mailchimp) and k_echo in _held(stack, klaviyo)
    marketing = stack.servers["klaviyo"].profile(k_echo)["marketing"]
    assert (marketing["consent"], marketing["custom_method_detail"]) == (
        "SUBSCRIBED",
        "composable-cdp",
    )
    assert stack.servers["mailchimp"].member(audience, m_echo)["source"] == "API - Generic"

    # 1) the person clicks "unsubscribe" in a Mailchimp email; two others withdraw in the
    # product, dated before our syncs subscribed them (their update reached us late)
    stack.servers["mailchimp"].person_unsubscribes(audience, person)
    for user in (k_user, m_user):
        _set_app_opt_in(user, False, before_first_sync)
    _cycle(db)
    assert _consent(db, person) == (False, "mailchimp")
    assert person not in _held(stack, mailchimp)
    assert stack.servers["mailchimp"].member(audience, person)["status"] == "unsubscribed"
    # our syncs' subscriptions (newer than the withdrawals) are not read back as consent
    for email in (k_echo, m_echo):
        assert _consent(db, email) == (False, "app"), email
    assert k_echo not in _held(stack, klaviyo)
    assert stack.servers["klaviyo"].consent(k_echo) == "UNSUBSCRIBED"
    assert m_echo not in _held(stack, mailchimp)
    ours = _query(
        db,
        "select count(*) from marts.consent_ledger as l join staging.stg_mailchimp__members as m "
        "on l.source = 'mailchimp' and l.record_key = m.mailchimp_member_key "
        "where l.granted and m.signup_source = 'API - Generic'",
    )[0][0]
    assert ours == 0
    for sync in syncs:  # the gate, for everyone: held = consented rows of the model
        consented = {
            e
            for e, ok in _query(
                db,
                f"select lower(m.{sync.identity_key}), c.email_marketing_consent "
                f"from {sync.model} as m join marts.customers as c using (customer_id)",
            )
            if ok
        }
        assert _held(stack, sync) == consented, sync.name

    # 2) the person ticks the box in the product again, after the unsubscribe: that wins
    regranted_at = dt.datetime.now(dt.UTC)
    _set_app_opt_in(person_user, True, regranted_at)
    _cycle(db)
    assert _consent(db, person) == (True, "app")
    assert person in _held(stack, mailchimp)
    assert stack.servers["mailchimp"].member(audience, person)["status"] == "subscribed"
    ledger = _query(
        db,
        "select source, granted from marts.consent_ledger where customer_id = "
        "(select customer_id from marts.customer_identifiers where id_type = 'email' "
        "and id_value = ?) order by decided_at",
        [person],
    )
    assert ("mailchimp", False) in ledger and ledger[-1] == ("app", True)

    # 3) the sync re-subscribed them: Mailchimp shows a form opt-in (the member's source) at the
    # sync's time. A withdrawal in the product dated between the re-grant and that re-subscribe
    # (it reached us late) must still win: the opt-in is our echo, not the person's grant
    member = stack.servers["mailchimp"].member(audience, person)
    assert member["source"] == "Hosted Signup Form"
    assert dt.datetime.fromisoformat(member["timestamp_opt"]) > regranted_at
    _set_app_opt_in(person_user, False, regranted_at + dt.timedelta(milliseconds=1))
    _cycle(db)
    assert _consent(db, person) == (False, "app")
    assert person not in _held(stack, mailchimp)
    assert stack.servers["mailchimp"].member(audience, person)["status"] == "unsubscribed"
