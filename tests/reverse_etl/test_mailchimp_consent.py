"""Mailchimp, consent-gated mirror: who withdrew consent is unsubscribed, not only untagged.

Untagging alone leaves the member ``subscribed`` in the audience, where the newsletter still
reaches them. Who merely left the segment keeps their subscription (the mirror semantic).
"""

from __future__ import annotations

from pathlib import Path

import requests

from connectors.suppression import hash_identifier
from orchestration.demo.fakes.mailchimp import MailchimpFake, subscriber_hash
from reverse_etl.engine import run_sync
from reverse_etl.state import connect
from tests.reverse_etl.conftest import (
    expected_members,
    gate_out,
    make_sync,
    set_consent,
    sql,
)

AUDIENCE, TAG = "News", "at-risk"
FIELDS = {"email": "email", "FNAME": "first_name", "LNAME": "last_name"}


def _status(fake: MailchimpFake, email: str) -> str:
    lst = fake.list_by_name(AUDIENCE)
    member = next(m for m in fake.members[lst["id"]].values() if m["email_address"] == email)
    return member["status"]


def _check_destination(fake: MailchimpFake, db: Path) -> None:
    """Tagged = exactly the consented, unsuppressed model rows."""
    assert set(fake.tagged(AUDIENCE, TAG)) == set(expected_members(db)) - _suppressed(db)


def _suppressed(db: Path) -> set[str]:
    con = connect(db, read_only=True)
    try:
        exists = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'ops' and table_name = 'suppression_list'"
        ).fetchone()[0]
        if not exists:
            return set()
        hashes = {
            r[0] for r in con.execute("select id_value_hash from ops.suppression_list").fetchall()
        }
        emails = [r[0] for r in con.execute("select email from marts.customers").fetchall()]
    finally:
        con.close()
    return {e for e in emails if hash_identifier("email", e) in hashes}


def test_withdrawn_consent_unsubscribes_and_regranted_consent_resubscribes(warehouse, monkeypatch):
    with MailchimpFake(token="k-us1") as fake:
        monkeypatch.setenv("MAILCHIMP_BASE_URL", fake.url)
        monkeypatch.setenv("MAILCHIMP_API_KEY", "k-us1")
        sync = make_sync("mailchimp", fields=FIELDS, options={"audience": AUDIENCE, "tag": TAG})
        assert run_sync(sync, db_path=warehouse).status == "success"
        _check_destination(fake, warehouse)
        sent = sorted(fake.tagged(AUDIENCE, TAG))
        assert {_status(fake, e) for e in sent} == {"subscribed"}
        withdrawn, forgotten, leaver = sent[0], sent[1], sent[2]

        # one withdraws consent, one is suppressed, one leaves the segment keeping consent
        gate_out(warehouse, withdrawn, forgotten, leaver)

        plan = run_sync(sync, db_path=warehouse, dry_run=True)
        result = run_sync(sync, db_path=warehouse)
        assert result.status == "success", result.message
        assert result.removed == 3
        assert result.api_calls <= plan.api_calls + 2  # plus the audience and tag lookups
        _check_destination(fake, warehouse)
        assert not {withdrawn, forgotten, leaver} & set(fake.tagged(AUDIENCE, TAG))
        assert set(fake.audience_members(AUDIENCE, status="unsubscribed")) == {
            withdrawn,
            forgotten,
        }
        assert _status(fake, leaver) == "subscribed"
        assert fake.audience_members(AUDIENCE).keys() == set(sent) - {withdrawn, forgotten}

        # consent given again: subscribed and tagged again; nothing else is written
        set_consent(warehouse, withdrawn, True)
        mark = len(fake.write_log)
        result = run_sync(sync, db_path=warehouse)
        assert (result.status, result.added, result.changed, result.removed) == (
            "success",
            1,
            0,
            0,
        )
        assert _status(fake, withdrawn) == "subscribed"
        assert withdrawn in fake.tagged(AUDIENCE, TAG)
        _check_destination(fake, warehouse)
        assert {e for _, _, e in fake.write_log[mark:]} == {withdrawn}
        assert _status(fake, forgotten) == "unsubscribed"
        assert _status(fake, leaver) == "subscribed"

        # an idle run writes nothing
        mark = len(fake.write_log)
        assert run_sync(sync, db_path=warehouse).api_calls == 0
        assert fake.write_log[mark:] == []


def test_a_forgotten_member_is_not_recreated_by_the_unsubscribe(warehouse, monkeypatch):
    """Deleted permanently in Mailchimp, then suppressed: the removal must not bring them back."""
    with MailchimpFake(token="k-us1") as fake:
        monkeypatch.setenv("MAILCHIMP_BASE_URL", fake.url)
        monkeypatch.setenv("MAILCHIMP_API_KEY", "k-us1")
        sync = make_sync("mailchimp", fields=FIELDS, options={"audience": AUDIENCE, "tag": TAG})
        run_sync(sync, db_path=warehouse)
        gone = sorted(fake.tagged(AUDIENCE, TAG))[0]
        lst = fake.list_by_name(AUDIENCE)
        deleted = requests.post(
            f"{fake.url}/3.0/lists/{lst['id']}/members/{subscriber_hash(gone)}"
            "/actions/delete-permanent",
            auth=("cdp", "k-us1"),
            timeout=10,
        )
        assert deleted.status_code == 204
        sql(warehouse, "create table ops.suppression_list (id_type varchar, id_value_hash varchar)")
        sql(
            warehouse,
            "insert into ops.suppression_list values ('email', ?)",
            [hash_identifier("email", gone)],
        )
        result = run_sync(sync, db_path=warehouse)
        assert (result.status, result.removed) == ("success", 1)
        assert all(m["email_address"] != gone for m in fake.members[lst["id"]].values())
        _check_destination(fake, warehouse)
