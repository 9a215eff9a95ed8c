"""The engine against the Files and Webhook destinations: diff, gates, state, dry run, retries."""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import pytest

from orchestration.demo.fakes.webhook import WebhookReceiver
from reverse_etl.destinations.files import KEY, read_table
from reverse_etl.engine import run_sync
from reverse_etl.state import connect
from tests.reverse_etl.conftest import (
    MODEL,
    break_emails,
    expected_members,
    make_sync,
    refresh_model,
    sql,
)

SECRET = "test-secret"


def files_sync(tmp_path: Path, **meta):
    return make_sync("files", options={"path": str(tmp_path / "out"), "format": "parquet"}, **meta)


def snapshot(tmp_path: Path) -> dict[str, dict]:
    frame = read_table(tmp_path / "out" / "snapshot.parquet")
    return {row[KEY]: {k: v for k, v in row.items() if k != KEY} for row in frame.to_dicts()}


def test_first_run_sends_consented_members_and_second_run_sends_nothing(warehouse, tmp_path):
    sync = files_sync(tmp_path)
    first = run_sync(sync, db_path=warehouse)
    expected = expected_members(warehouse)
    assert first.status == "success", first.message
    assert first.added == len(expected) > 0
    assert snapshot(tmp_path) == expected
    all_rows = sql(warehouse, f"select count(*) from {MODEL}")[0][0]
    assert first.skipped == all_rows - len(expected)

    second = run_sync(sync, db_path=warehouse)
    assert (second.added, second.changed, second.removed, second.api_calls) == (0, 0, 0, 0)
    runs = sql(warehouse, "select status, rows_added from ops.sync_runs order by started_at")
    assert runs == [("success", len(expected)), ("success", 0)]


def test_changes_are_detected_over_mapped_fields_only(warehouse, tmp_path):
    sync = files_sync(tmp_path)
    run_sync(sync, db_path=warehouse)
    sql(warehouse, f"update {MODEL} set phone = '+19999999999'")  # not mapped
    assert run_sync(sync, db_path=warehouse).changed == 0
    changed = sql(
        warehouse,
        f"update {MODEL} m set first_name = m.first_name || 'x' from marts.customers c "
        "where c.customer_id = m.customer_id and c.email_marketing_consent "
        "and m.customer_id in (select customer_id from activation.sync_test__high_value "
        "order by customer_id limit 10) returning m.email",
    )
    result = run_sync(sync, db_path=warehouse)
    assert result.changed == len(changed) > 0
    assert snapshot(tmp_path) == expected_members(warehouse)


def test_mirror_removes_members_who_left_and_upsert_keeps_them(warehouse, tmp_path):
    mirror = files_sync(tmp_path)
    run_sync(mirror, db_path=warehouse)
    before = snapshot(tmp_path)
    left = sql(
        warehouse,
        "delete from segments.high_value_customers where customer_id in (select customer_id "
        "from segments.high_value_customers order by customer_id desc limit 20) returning email",
    )
    con = connect(warehouse)
    refresh_model(con)
    con.close()
    result = run_sync(mirror, db_path=warehouse)
    expected = expected_members(warehouse)
    assert result.removed == len({e for (e,) in left} & set(before)) > 0
    assert snapshot(tmp_path) == expected
    assert not sql(
        warehouse,
        "select * from ops.sync_state where sync_name = ? and row_key in "
        "(select unnest(?::varchar[]))",
        [mirror.name, [e for (e,) in left]],
    )


def test_consent_withdrawal_and_suppression_remove_in_mirror_mode(warehouse, tmp_path):
    sync = files_sync(tmp_path)
    run_sync(sync, db_path=warehouse)
    sent = sorted(snapshot(tmp_path))
    withdrawn, forgotten = sent[0], sent[1]
    sql(
        warehouse,
        "update marts.customers set email_marketing_consent = false where email = ?",
        [withdrawn],
    )
    sql(warehouse, "create table ops.suppression_list (id_type varchar, id_value_hash varchar)")
    digest = hashlib.sha256(forgotten.strip().lower().encode()).hexdigest()
    sql(warehouse, "insert into ops.suppression_list values ('email', ?)", [digest])

    result = run_sync(sync, db_path=warehouse)
    assert result.removed == 2
    held = snapshot(tmp_path)
    assert withdrawn not in held and forgotten not in held
    assert held == {k: v for k, v in expected_members(warehouse).items() if k != forgotten}
    reasons = dict(
        sql(
            warehouse,
            "select row_key, error from ops.sync_row_results "
            "where run_id = ? and status = 'skipped'",
            [result.run_id],
        )
    )
    assert reasons[withdrawn] == "no email_marketing consent"
    assert reasons[forgotten] == "suppressed"


def test_dry_run_plans_without_writing_or_calling(warehouse, tmp_path):
    with WebhookReceiver(secret=SECRET) as hook:
        env = {"CDP_WEBHOOK_URL": hook.url + "/hooks/t", "CDP_WEBHOOK_SECRET": SECRET}
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            sync = make_sync("webhook", batch_size=25)
            plan = run_sync(sync, db_path=warehouse, dry_run=True)
            assert hook.calls == []
            tables = sql(
                warehouse,
                "select table_name from duckdb_tables() "
                "where schema_name = 'ops' and database_name = current_database()",
            )
            assert tables == []
            n = len(expected_members(warehouse))
            assert plan.status == "dry_run" and plan.added == n
            assert plan.api_calls == math.ceil(n / 25)
            assert re.search(rf"would add\s+{n} rows", plan.describe())

            real = run_sync(sync, db_path=warehouse)
            assert real.added == n and real.api_calls == plan.api_calls
            again = run_sync(sync, db_path=warehouse, dry_run=True)
            assert (again.added, again.changed, again.removed, again.api_calls) == (0, 0, 0, 0)


def _webhook(monkeypatch, hook, name="t"):
    monkeypatch.setenv("CDP_WEBHOOK_URL", f"{hook.url}/hooks/{name}")
    monkeypatch.setenv("CDP_WEBHOOK_SECRET", SECRET)


@pytest.mark.parametrize("strict", [False, True], ids=["per-row-errors", "batch-rejected"])
def test_invalid_rows_are_recorded_with_the_destinations_message(warehouse, monkeypatch, strict):
    broken = break_emails(warehouse, 3, " at ")
    assert broken
    with WebhookReceiver(secret=SECRET, strict=strict) as hook:
        _webhook(monkeypatch, hook)
        sync = make_sync("webhook", batch_size=40)
        result = run_sync(sync, db_path=warehouse)
        expected = expected_members(warehouse)
        assert result.status == "partial"
        assert result.failed == len(broken)
        assert hook.records["t"] == {k: v for k, v in expected.items() if k not in broken}
        errors = dict(
            sql(
                warehouse,
                "select row_key, error from ops.sync_row_results "
                "where run_id = ? and status = 'failed'",
                [result.run_id],
            )
        )
        assert set(errors) == set(broken)
        assert all("invalid email address" in e for e in errors.values())
        assert hook.rejected_signatures == 0

        # failed rows are retried on the next run; once fixed, they go through
        retry = run_sync(sync, db_path=warehouse)
        assert (retry.added, retry.failed) == (0, len(broken))
        sql(warehouse, f"update {MODEL} set email = replace(email, ' at ', '@')")
        fixed = run_sync(sync, db_path=warehouse)
        assert fixed.failed == 0
        assert hook.records["t"] == expected_members(warehouse)


def test_webhook_signatures_are_verified(warehouse, monkeypatch):
    with WebhookReceiver(secret="the-receivers-secret") as hook:
        _webhook(monkeypatch, hook)  # we sign with another secret
        result = run_sync(make_sync("webhook"), db_path=warehouse)
        assert result.status == "failed" and "401" in result.message
        assert hook.rejected_signatures >= 1 and hook.records == {}
        acknowledged = "select count(*) from ops.sync_state where fields_hash <> ''"
        assert sql(warehouse, acknowledged)[0][0] == 0


def test_retries_through_injected_faults(warehouse, monkeypatch):
    with WebhookReceiver(secret=SECRET, fault_rate=0.3, seed=5) as hook:
        _webhook(monkeypatch, hook)
        result = run_sync(make_sync("webhook", batch_size=5), db_path=warehouse)
        expected = expected_members(warehouse)
        assert result.status == "success" and result.failed == 0
        assert hook.records["t"] == expected
        batches = math.ceil(len(expected) / 5)
        faults = sum(c.status >= 500 for c in hook.calls)
        assert faults > 0 and result.api_calls == batches + faults  # faults were retried ...
        assert len({d["delivery"] for d in hook.deliveries}) == batches  # ... none applied twice


def test_missing_credentials_skip_the_sync_with_a_message(warehouse, monkeypatch):
    monkeypatch.delenv("CDP_WEBHOOK_URL", raising=False)
    result = run_sync(make_sync("webhook"), db_path=warehouse)
    assert result.status == "skipped" and "CDP_WEBHOOK_URL" in result.message
    assert sql(warehouse, "select status, message from ops.sync_runs") == [
        ("skipped", result.message)
    ]


@pytest.mark.parametrize("mode", ["insert", "update", "upsert"])
def test_modes_against_a_webhook(warehouse, monkeypatch, mode):
    with WebhookReceiver(secret=SECRET) as hook:
        _webhook(monkeypatch, hook)
        expected = expected_members(warehouse)
        present = dict(sorted(expected.items())[:5])
        hook.records["t"] = {k: {**v, "firstname": "old"} for k, v in present.items()}
        result = run_sync(make_sync("webhook", mode=mode), db_path=warehouse)
        held = hook.records["t"]
        if mode == "insert":
            assert result.failed == len(present)  # "record already exists"
            assert {k: held[k]["firstname"] for k in present} == dict.fromkeys(present, "old")
            assert set(held) == set(expected)
        elif mode == "update":
            assert result.failed == len(expected) - len(present)  # "no such record"
            assert held == present
        else:
            assert held == expected and result.failed == 0


def test_slack_gets_one_readable_message_per_batch(warehouse, monkeypatch):
    with WebhookReceiver() as hook:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{hook.url}/services/T0/B0/secret")
        sync = make_sync("slack", batch_size=20, rate_limit={"requests": 50, "per_seconds": 1})
        result = run_sync(sync, db_path=warehouse)
        expected = expected_members(warehouse)
        assert result.status == "success" and result.added == len(expected)
        assert len(hook.slack_messages) == math.ceil(len(expected) / 20)
        text = "\n".join(m["text"] for m in hook.slack_messages)
        assert all(f"• {email} (" in text for email in expected)

        gone = sorted(expected)[:3]
        sql(
            warehouse,
            "update marts.customers set email_marketing_consent = false "
            "where email in (select unnest(?::varchar[]))",
            [gone],
        )
        run_sync(sync, db_path=warehouse)
        last = hook.slack_messages[-1]["text"]
        assert last.startswith("*test_slack*: 3 left") and all(e in last for e in gone)


@pytest.mark.parametrize("mode", ["mirror", "insert"])
def test_rows_in_flight_when_a_run_died_are_resent(warehouse, monkeypatch, mode):
    """Rows marked unknown (a send with no recorded answer) go again; in mirror, leavers go."""
    with WebhookReceiver(secret=SECRET) as hook:
        _webhook(monkeypatch, hook)
        sync = make_sync("webhook", mode=mode)
        expected = expected_members(warehouse)
        in_flight = sorted(expected)[:4]
        # as a killed run leaves them: marked unknown, maybe received, never acknowledged
        sql(
            warehouse,
            "create schema if not exists ops; create table ops.sync_state (sync_name varchar, "
            "row_key varchar, fields_hash varchar, dest_id varchar, synced_at timestamp, "
            "primary key (sync_name, row_key))",
        )
        sql(
            warehouse,
            "insert into ops.sync_state select ?, unnest(?::varchar[]), '', null, now()",
            [sync.name, in_flight],
        )
        hook.records["t"] = {k: expected[k] for k in in_flight[:2]}  # two had arrived
        leaver = in_flight[0]
        sql(warehouse, f"delete from {MODEL} where email = ?", [leaver])

        result = run_sync(sync, db_path=warehouse)
        held = hook.records["t"]
        if mode == "mirror":
            assert result.removed == 1 and leaver not in held
            assert held == expected_members(warehouse)
        else:  # insert: the never-acknowledged rows are inserted; one already arrived
            assert set(held) == set(expected)
            assert result.failed == 1  # in_flight[1]: "record already exists"


def test_an_unreachable_secret_url_never_reaches_the_warehouse(warehouse, monkeypatch):
    """A Slack webhook URL is a credential: errors name the host, never the path."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret_path = "/services/T000/B000/very-secret-token"
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"http://127.0.0.1:{port}{secret_path}")
    sync = make_sync(
        "slack",
        batch_size=20,
        rate_limit={"requests": 100, "per_seconds": 1},
        options={"max_attempts": 2},
    )
    result = run_sync(sync, db_path=warehouse)
    assert result.status == "failed"
    texts = sql(
        warehouse,
        "select coalesce(message, '') from ops.sync_runs union all "
        "select coalesce(error, '') from ops.sync_row_results",
    )
    assert any(f"127.0.0.1:{port}" in t for (t,) in texts)
    assert not any("very-secret-token" in t for (t,) in texts)
