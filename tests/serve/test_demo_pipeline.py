"""The serving side on a real dbt build of generated data: snapshot, lookups, the demo rule."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from orchestration.demo.fakes.webhook import WebhookReceiver
from orchestration.demo.warehouse import load_raw
from orchestration.serve.demo import run_pricing_demo
from orchestration.serve.profiles import lookup
from tests.conftest import AS_OF, run_dbt


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory, small_demo) -> Path:
    db_path = tmp_path_factory.mktemp("pipeline") / "cdp.duckdb"
    load_raw(db_path, small_demo)
    # only the models the snapshot reads (and what they need); their tests run elsewhere
    run_dbt(
        db_path,
        "build",
        "--select",
        "+customers +customer_identifiers +segment_memberships +customer_events",
        "--exclude-resource-type",
        "test",
        "unit_test",
        "--vars",
        json.dumps({"cdp_as_of": AS_OF.strftime("%Y-%m-%d")}),
    )
    return db_path


def test_pricing_demo_fires_for_the_high_value_customer_only(
    warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CDP_EVENTS_DIR", raising=False)
    with WebhookReceiver(secret="") as slack:
        result = run_pricing_demo(warehouse, tmp_path, slack_url=slack.url + "/services/T/B/demo")
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        members = {
            r[0]
            for r in con.execute(
                "select customer_id from marts.segment_memberships "
                "where segment = 'high_value_customers'"
            ).fetchall()
        }
    finally:
        con.close()
    assert result.high_value["customer_id"] in members
    assert result.other["customer_id"] not in members
    assert result.ok, result.firings
    assert len(slack.slack_messages) == 1 and "/pricing" in slack.slack_messages[0]["text"]


def test_lookup_on_the_real_marts(warehouse: Path, tmp_path: Path, small_demo) -> None:
    from orchestration.serve.snapshot import refresh

    refresh(warehouse, tmp_path / "snapshot")
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        cid, email = con.execute(
            "select customer_id, id_value from marts.customer_identifiers "
            "where id_type = 'email' order by customer_id limit 1"
        ).fetchone()
        n_events = con.execute(
            "select count(*) from marts.customer_events where customer_id = ?", [cid]
        ).fetchone()[0]
    finally:
        con.close()
    profile = lookup(f"  {email.upper()} ", tmp_path / "snapshot")
    assert profile["customer_id"] == cid
    assert ("email", email) in {(i["id_type"], i["id_value"]) for i in profile["identifiers"]}
    assert "lifetime_value" in profile["traits"]
    from orchestration.serve.profiles import reader_for

    events = reader_for(tmp_path / "snapshot").store().events_of(cid, limit=1000)
    assert len(events) == min(n_events, 100)
