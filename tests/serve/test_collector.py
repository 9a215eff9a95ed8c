"""The collector against real clients: segment-analytics-python, rudder-sdk-python, raw HTTP.

Every test talks to the app over a real socket; events are checked in the files on disk and,
for the official clients, in ``raw_events.events`` after the events connector's ingest.
"""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path

import duckdb
import pytest
import requests
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient

from connectors.ingest import ingest
from orchestration.serve.spec import MAX_BATCH_BYTES, MAX_EVENT_BYTES
from orchestration.serve.writer import REJECTED_DIR, read_events
from tests.serve.conftest import WRITE_KEY, Running


def _post(running: Running, path: str, body: object, key: str | None = WRITE_KEY, **kw):
    auth = (key, "") if key is not None else None
    return requests.post(f"{running.url}{path}", json=body, auth=auth, timeout=10, **kw)


def _stored_ids(running: Running) -> list[str]:
    running.log.rotate()
    return [e["messageId"] for e in read_events(running.events_dir)]


def _load_raw_events(running: Running, db_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Run the events connector over the collector's folder; message_id -> raw row."""
    running.log.rotate()
    monkeypatch.setenv("CDP_EVENTS_DIR", str(running.events_dir))
    results = ingest(db_path, sources=["events"])
    assert [r.status for r in results] == ["ok"], results
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        rows = con.execute(
            "select message_id, type, event, user_id, anonymous_id, email, page_path, properties "
            "from raw_events.events"
        ).fetchall()
    finally:
        con.close()
    return {r[0]: r for r in rows}


def test_segment_library_events_land_in_raw_events(
    running: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[Exception] = []
    client = SegmentClient(
        WRITE_KEY,
        host=running.url,
        gzip=True,
        on_error=lambda e, batch: errors.append(e),
        max_retries=1,
    )
    sent = []
    for i in range(120):
        user = str(i % 40 + 1)
        if i % 3 == 0:
            client.identify(user, {"email": f"Person{user}@Example.com", "plan": "pro"})
            sent.append(("identify", None, user))
        elif i % 3 == 1:
            client.track(user, "Order Completed", {"revenue": i, "sku": f"sku-{i}"})
            sent.append(("track", "Order Completed", user))
        else:
            client.page(user, name="Pricing", properties={"path": "/pricing"})
            sent.append(("page", None, user))
    client.flush()
    client.join()
    assert not errors

    stored = read_events_after_rotate(running)
    assert len(stored) == len(sent) == len({e["messageId"] for e in stored})
    assert [(e["type"], e.get("event"), e["userId"]) for e in stored] == sent
    assert all("writeKey" not in e and e["receivedAt"] for e in stored)

    raw = _load_raw_events(running, tmp_path / "wh.duckdb", monkeypatch)
    assert set(raw) == {e["messageId"] for e in stored}
    identify = next(e for e in stored if e["type"] == "identify")
    assert raw[identify["messageId"]][5] == identify["traits"]["email"]
    track = next(e for e in stored if e["type"] == "track")
    assert json.loads(raw[track["messageId"]][7]) == track["properties"]


def read_events_after_rotate(running: Running) -> list[dict]:
    running.log.rotate()
    return read_events(running.events_dir)


def test_rudder_library_events_land_in_raw_events(
    running: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[Exception] = []
    client = RudderClient(
        WRITE_KEY, running.url, on_error=lambda e, batch: errors.append(e), max_retries=1
    )
    for i in range(30):
        client.track(anonymous_id=f"anon-r{i}", event="Button Clicked", properties={"i": i})
    client.screen(user_id="42", name="Home")
    client.group(user_id="42", group_id="acme", traits={"name": "Acme"})
    client.alias(previous_id="anon-r1", user_id="42")
    client.flush()
    client.join()
    assert not errors
    stored = read_events_after_rotate(running)
    kinds = sorted(e["type"] for e in stored)
    assert kinds == sorted(["track"] * 30 + ["screen", "group", "alias"])
    raw = _load_raw_events(running, tmp_path / "wh.duckdb", monkeypatch)
    assert set(raw) == {e["messageId"] for e in stored}
    assert {raw[e["messageId"]][4] for e in stored if e["type"] == "track"} == {
        f"anon-r{i}" for i in range(30)
    }


def _event(**fields) -> dict:
    return {
        "type": "track",
        "event": "Clicked",
        "userId": "u1",
        "messageId": uuid.uuid4().hex,
        **fields,
    }


def test_bad_payloads_are_refused_with_json_errors_and_valid_events_kept(
    running: Running,
) -> None:
    kept = []

    def good() -> dict:
        kept.append(_event())
        return kept[-1]

    assert _post(running, "/v1/batch", {"batch": [good()]}).status_code == 200

    # malformed JSON
    r = requests.post(
        f"{running.url}/v1/batch", data=b'{"batch": [', auth=(WRITE_KEY, ""), timeout=10
    )
    assert (r.status_code, r.json()["code"]) == (400, "invalid_json")
    # wrong key, missing key
    r = _post(running, "/v1/batch", {"batch": [_event()]}, key="not-a-key")
    assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
    r = _post(running, "/v1/batch", {"batch": [_event()]}, key=None)
    assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
    # the key in the body, as some clients send it, is accepted
    r = _post(running, "/v1/batch", {"batch": [good()], "writeKey": WRITE_KEY}, key=None)
    assert r.status_code == 200
    # an oversize batch is refused whole
    blob = "x" * (MAX_EVENT_BYTES // 2)
    too_big = {"batch": [_event(properties={"blob": blob}) for _ in range(32)]}
    assert len(json.dumps(too_big)) > MAX_BATCH_BYTES
    r = _post(running, "/v1/batch", too_big)
    assert (r.status_code, r.json()["code"]) == (400, "payload_too_large")
    # also when gzip hides the size
    r = requests.post(
        f"{running.url}/v1/batch",
        data=gzip.compress(json.dumps(too_big).encode()),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        auth=(WRITE_KEY, ""),
        timeout=10,
    )
    assert (r.status_code, r.json()["code"]) == (400, "payload_too_large")
    # a batch mixing valid and invalid messages: the valid ones are kept, the rest named
    oversize = _event(properties={"blob": "y" * MAX_EVENT_BYTES})
    mixed = [good(), {"userId": "u1", "event": "no type"}, oversize, good(), {"type": "track"}]
    r = _post(running, "/v1/batch", {"batch": mixed})
    body = r.json()
    assert r.status_code == 400 and body["code"] == "invalid_events"
    assert body["accepted"] == 2
    assert [x["index"] for x in body["rejected"]] == [1, 2, 4]
    assert "missing type" in body["rejected"][0]["reason"]
    assert "byte limit" in body["rejected"][1]["reason"]
    # single-event endpoints: the path gives the type; invalid -> 400, nothing stored
    r = _post(running, "/v1/track", {"userId": "u1", "messageId": "m-no-event"})
    assert (r.status_code, r.json()["code"]) == (400, "invalid_events")
    assert "track needs an event name" in r.json()["message"]
    single = {"userId": "u9", "traits": {"email": "a@b.co"}, "messageId": uuid.uuid4().hex}
    assert _post(running, "/v1/identify", single).status_code == 200
    kept.append({**single, "type": "identify"})

    stored = read_events_after_rotate(running)
    assert sorted(e["messageId"] for e in stored) == sorted(e["messageId"] for e in kept)
    assert next(e for e in stored if e["messageId"] == single["messageId"])["type"] == "identify"
    # the refused messages are quarantined with their reasons, not silently dropped
    quarantined = [
        json.loads(line)
        for path in (running.events_dir / REJECTED_DIR).iterdir()
        for line in path.read_text().splitlines()
    ]
    refused = [x["reason"] for x in body["rejected"]] + ["track needs an event name"]
    assert sorted(q["reason"] for q in quarantined) == sorted(refused)
    assert {q["message"].get("messageId") for q in quarantined} >= {oversize["messageId"]}


def test_message_ids_are_deduplicated_across_requests_and_restarts(running: Running) -> None:
    events = [_event() for _ in range(10)]
    assert _post(running, "/v1/batch", {"batch": events[:6]}).status_code == 200
    # a client retry overlapping the first batch, plus a duplicate inside the batch itself
    retry = events[3:] + [events[9]]
    assert _post(running, "/v1/batch", {"batch": retry}).status_code == 200
    assert sorted(_stored_ids(running)) == sorted(e["messageId"] for e in events)

    # a new collector on the same folder remembers what was stored
    running.log.close()
    from orchestration.serve.writer import EventLog

    with EventLog(running.events_dir) as log:
        result = log.submit([{**events[0], "receivedAt": "x"}, _event()]).result()
    assert result.duplicates == 1 and len(result.stored) == 1
    running.log.start()


def test_messages_without_id_or_timestamp_get_them(running: Running) -> None:
    body = {
        "batch": [
            {"type": "page", "anonymousId": "a1", "originalTimestamp": "2026-11-01T10:00:00Z"}
        ],
        "sentAt": "2026-11-01T10:00:05Z",
        "context": {"ip": "10.0.0.1"},
    }
    assert _post(running, "/v1/batch", body).status_code == 200
    (stored,) = read_events_after_rotate(running)
    assert stored["messageId"].startswith("api-")
    assert stored["context"] == {"ip": "10.0.0.1"}
    # clock-skew correction: timestamp = receivedAt - (sentAt - originalTimestamp) = -5 s
    from datetime import datetime, timedelta

    received = datetime.fromisoformat(stored["receivedAt"].replace("Z", "+00:00"))
    timestamp = datetime.fromisoformat(stored["timestamp"].replace("Z", "+00:00"))
    assert abs((received - timestamp) - timedelta(seconds=5)) < timedelta(milliseconds=2)
