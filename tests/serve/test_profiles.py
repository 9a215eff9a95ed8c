"""The profile snapshot (atomic swap, tolerant of extra columns) and the lookup API."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb
import pytest
import requests

from orchestration.serve.profiles import SnapshotReader, lookup
from orchestration.serve.snapshot import current_version, manifest, refresh
from tests.serve.conftest import API_TOKEN, Running
from tests.serve.fixtures import build_marts


def _expected(db_path: Path, customer_id: str) -> dict:
    """What the warehouse says about one customer, straight from the marts."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        row = con.execute(
            "select * from marts.customers where customer_id = ?", [customer_id]
        ).fetchone()
        columns = [d[0] for d in con.description]
        segments = {
            r[0]
            for r in con.execute(
                "select segment from marts.segment_memberships where customer_id = ?",
                [customer_id],
            ).fetchall()
        }
        ids = {
            (r[0], r[1])
            for r in con.execute(
                "select id_type, id_value from marts.customer_identifiers where customer_id = ?",
                [customer_id],
            ).fetchall()
        }
        events = [
            r[0]
            for r in con.execute(
                "select event_id from marts.customer_events where customer_id = ? "
                "order by occurred_at desc",
                [customer_id],
            ).fetchall()
        ]
    finally:
        con.close()
    return {
        "row": dict(zip(columns, row, strict=True)),
        "segments": segments,
        "ids": ids,
        "events": events,
    }


@pytest.mark.parametrize(
    ("identifier", "matched_type"),
    [
        ("email:  Person17@EXAMPLE.com ", "email"),
        ("person17@example.com", "email"),
        ("phone:(555) 000-0017", "phone"),
        ("555.000.0017", "phone"),
        ("+1 555 000 0017", "phone"),
        ("user_id:17", "user_id"),
        ("17", "user_id"),
        ("anon-0000017", "anonymous_id"),
        ("customer_id:cus_0000017", "customer_id"),
    ],
)
def test_lookup_normalizes_like_identity(marts: Path, identifier: str, matched_type: str) -> None:
    profile = lookup(identifier, marts.parent / "snapshot")
    assert profile is not None and profile["customer_id"] == "cus_0000017"
    assert profile["matched"]["id_type"] == matched_type


def test_profile_holds_what_the_warehouse_holds(marts: Path) -> None:
    profile = lookup("person17@example.com", marts.parent / "snapshot")
    expected = _expected(marts, "cus_0000017")
    assert profile["attributes"]["email"] == expected["row"]["email"]
    assert (
        profile["attributes"]["email_marketing_opt_in"] == expected["row"]["email_marketing_opt_in"]
    )
    assert profile["traits"]["lifetime_value"] == expected["row"]["lifetime_value"]
    # a column the serving side has never heard of still reaches the profile
    assert profile["traits"]["some_new_column"] == expected["row"]["some_new_column"]
    assert {s["segment"] for s in profile["segments"]} == expected["segments"]
    assert {(i["id_type"], i["id_value"]) for i in profile["identifiers"]} == expected["ids"]
    assert lookup("nobody@example.com", marts.parent / "snapshot") is None
    assert lookup("999999999", marts.parent / "snapshot") is None


def test_refresh_swaps_atomically_and_readers_follow(tmp_path: Path) -> None:
    db_path = tmp_path / "cdp.duckdb"
    build_marts(db_path, 50)
    out = tmp_path / "snapshot"
    first = refresh(db_path, out)
    reader = SnapshotReader(out)
    assert reader.store().customers.height == 50

    build_marts(db_path, 80)
    seen: list[int] = []
    stop = threading.Event()

    def poll() -> None:  # a reader during the swap sees the old or the new version, never a mix
        while not stop.is_set():
            try:
                seen.append(manifest(current_version(out))["rows"]["customers"])
            except FileNotFoundError:
                continue  # pruned after two newer versions: a slow reader retries

    t = threading.Thread(target=poll)
    t.start()
    second = refresh(db_path, out)
    third = refresh(db_path, out)
    stop.set()
    t.join()
    assert set(seen) <= {50, 80}
    assert reader.refresh_if_changed()
    assert reader.store().customers.height == 80
    assert current_version(out) == third
    # older versions are pruned, the previous one is kept for readers still holding it
    assert not first.exists() and second.exists()
    assert not list(out.glob(".tmp-*"))


def test_refresh_without_optional_marts_and_failing_without_customers(tmp_path: Path) -> None:
    db_path = tmp_path / "cdp.duckdb"
    build_marts(db_path, 10)
    con = duckdb.connect(str(db_path))
    con.execute("drop table marts.segment_memberships")
    con.execute("drop table marts.customer_events")
    con.close()
    version = refresh(db_path, tmp_path / "snap")
    assert manifest(version)["rows"] == {
        "customers": 10,
        "customer_identifiers": 40,
        "segment_memberships": 0,
        "customer_events": 0,
    }
    assert lookup("person3@example.com", tmp_path / "snap")["segments"] == []

    con = duckdb.connect(str(db_path))
    con.execute("drop table marts.customers")
    con.close()
    with pytest.raises(RuntimeError, match="marts.customers does not exist"):
        refresh(db_path, tmp_path / "snap")
    assert current_version(tmp_path / "snap") == version  # the old snapshot stays in place
    assert not list((tmp_path / "snap").glob(".tmp-*"))


def test_cdp_profile_exports_a_first_snapshot_from_the_warehouse(
    cdp_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from orchestration.cli import main

    build_marts(cdp_env, 20)
    monkeypatch.setenv("CDP_SNAPSHOT_DIR", str(cdp_env.parent / "snapshot"))
    assert main(["profile", "Person5@Example.com"]) == 0
    assert '"customer_id": "cus_0000005"' in capsys.readouterr().out
    assert current_version(cdp_env.parent / "snapshot") is not None
    assert main(["profile", "nobody@example.com"]) == 1


def _get(running: Running, path: str, token: str | None = API_TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{running.url}{path}", headers=headers, timeout=10)


def test_profile_api(running: Running) -> None:
    r = _get(running, "/v1/profiles/email:person17@example.com")
    assert r.status_code == 200
    assert r.json() == lookup("email:person17@example.com", running.snapshot_dir)

    assert _get(running, "/v1/profiles/phone:+15550000017").json()["customer_id"] == "cus_0000017"
    assert _get(running, "/v1/profiles/email:nobody@example.com").status_code == 404
    assert (
        _get(running, "/v1/profiles/email:person17@example.com", token="wrong").status_code == 401
    )
    assert _get(running, "/v1/profiles/email:person17@example.com", token=None).status_code == 401

    expected = _expected(running.db_path, "cus_0000017")["events"]
    r = _get(running, "/v1/profiles/user_id:17/events?limit=3")
    body = r.json()
    assert r.status_code == 200 and body["customer_id"] == "cus_0000017"
    assert [e["event_id"] for e in body["events"]] == expected[:3]
    assert body["events"][0]["properties"] == {"n": int(expected[0].rsplit("-", 1)[1])}
    full = _get(running, "/v1/profiles/user_id:17/events?limit=1000").json()
    assert [e["event_id"] for e in full["events"]] == expected
    assert _get(running, "/v1/profiles/user_id:17/events?limit=0").status_code == 400


def test_running_api_follows_a_new_snapshot_without_restart(tmp_path: Path) -> None:
    from orchestration.serve.app import ServerThread, create_app

    db_path = tmp_path / "cdp.duckdb"
    build_marts(db_path, 10)
    refresh(db_path, tmp_path / "snapshot")
    app = create_app(
        events_dir=tmp_path / "events",
        write_keys={"k"},
        api_token=API_TOKEN,
        snapshot_dir=tmp_path / "snapshot",
        triggers_path=tmp_path / "no-rules.yml",
        firings_dir=tmp_path / "firings",
    )
    with ServerThread(app) as server:
        running = Running(server.url, server, *(None,) * 5)
        assert _get(running, "/v1/profiles/email:person15@example.com").status_code == 404
        build_marts(db_path, 20)  # the next build knows person 15
        refresh(db_path, tmp_path / "snapshot")
        deadline = time.monotonic() + 5
        while _get(running, "/v1/profiles/email:person15@example.com").status_code != 200:
            assert time.monotonic() < deadline, "the new snapshot was not picked up"
            time.sleep(0.1)


def test_profile_json_survives_awkward_column_types(tmp_path: Path) -> None:
    db_path = tmp_path / "cdp.duckdb"
    build_marts(db_path, 3)
    con = duckdb.connect(str(db_path))
    con.execute(
        "create or replace table marts.customers as select *, "
        "cast('nan' as double) as avg_gap_days, interval 3 day as since_last_order, "
        "cast(12.50 as decimal(10, 2)) as balance, uuid() as token, date '2026-01-02' as d, "
        "{'a': 1} as nested from marts.customers"
    )
    con.close()
    refresh(db_path, tmp_path / "snapshot")
    traits = lookup("person2@example.com", tmp_path / "snapshot")["traits"]
    import json

    assert json.loads(json.dumps(traits, allow_nan=False)) == traits
    assert traits["avg_gap_days"] is None and traits["since_last_order"] == 3 * 86400
    assert traits["balance"] == 12.5 and traits["d"] == "2026-01-02"
    assert traits["nested"] == {"a": 1}


def test_lookup_while_a_build_holds_the_warehouse_says_so(
    cdp_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    from orchestration.serve.snapshot import SnapshotMissing

    build_marts(cdp_env, 5)
    monkeypatch.setenv("CDP_SNAPSHOT_DIR", str(cdp_env.parent / "snapshot"))
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(cdp_env)!r}); print('ok', flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "ok"
        with pytest.raises(SnapshotMissing, match="the warehouse is busy"):
            lookup("person1@example.com")
    finally:
        writer.communicate("", timeout=10)
    assert lookup("person1@example.com")["customer_id"] == "cus_0000001"


def test_refresh_after_a_deletion_can_drop_every_older_version(tmp_path: Path) -> None:
    db_path = tmp_path / "cdp.duckdb"
    build_marts(db_path, 5)
    first = refresh(db_path, tmp_path / "snap")
    con = duckdb.connect(str(db_path))
    con.execute("delete from marts.customers where customer_id = 'cus_0000003'")
    con.execute("delete from marts.customer_identifiers where customer_id = 'cus_0000003'")
    con.close()
    latest = refresh(db_path, tmp_path / "snap", keep_versions=1)
    assert not first.exists()
    assert [p.name for p in (tmp_path / "snap").glob("v-*")] == [latest.name]
    assert lookup("person3@example.com", tmp_path / "snap") is None
