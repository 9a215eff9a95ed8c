"""Events connector: Segment JSONL files into raw_events.events, once per message."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from connectors.ingest import ingest, ingest_stream
from orchestration.demo.sources import write_events
from tests.connectors.helpers import assert_raw_equals_source, rows, scalar


@pytest.fixture
def events_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "events"
    monkeypatch.setenv("CDP_EVENTS_DIR", str(folder))
    return folder


def test_events_load_every_message_once_and_second_run_reads_nothing(
    small_demo, cdp_env, events_dir
):
    paths = write_events(small_demo, events_dir, n_files=3, n_duplicates=4)
    lines = sum(len(p.read_text().splitlines()) for p in paths)
    first = ingest_stream("events", "events")
    assert first.status == "ok"
    assert first.rows_read == lines == small_demo.tables["events.events"].height + 2 * 4
    assert first.rows_loaded == small_demo.tables["events.events"].height
    assert_raw_equals_source(cdp_env, small_demo, "events.events")
    again = ingest_stream("events", "events")
    assert (again.rows_read, again.rows_loaded, again.pages) == (0, 0, 0)
    assert_raw_equals_source(cdp_env, small_demo, "events.events")


def test_alias_previous_id_and_drift_fields_are_kept_in_record(cdp_env, events_dir):
    events_dir.mkdir()
    msg = {
        "type": "alias",
        "messageId": "m-alias",
        "previousId": "anon-1",
        "userId": "42",
        "timestamp": "2026-10-01T10:00:00+02:00",
        "brandNewField": {"x": 1},
    }
    (events_dir / "a.jsonl").write_text(json.dumps(msg) + "\n")
    assert ingest_stream("events", "events").rows_loaded == 1
    row = rows(
        cdp_env,
        "select user_id, type, email, \"timestamp\", _record->>'$.previousId', "
        "_record->'$.brandNewField'->>'x' from raw_events.events",
    )[0]
    assert row[:3] == ("42", "alias", None)
    assert str(row[3]) == "2026-10-01 08:00:00"  # offset applied, stored as naive UTC
    assert row[4:] == ("anon-1", "1")


def test_partial_line_waits_and_appended_lines_are_picked_up(cdp_env, events_dir):
    events_dir.mkdir()
    path = events_dir / "live.jsonl"

    def msg(i: int) -> str:
        return json.dumps({"type": "track", "event": "E", "messageId": f"m{i}", "userId": "1"})

    path.write_text(msg(1) + "\n" + msg(2)[:10])  # the collector is mid-write
    assert ingest_stream("events", "events").rows_loaded == 1
    with path.open("a") as f:
        f.write(msg(2)[10:] + "\n" + msg(3) + "\n")
    result = ingest_stream("events", "events")
    assert (result.rows_read, result.rows_loaded) == (2, 2)
    got = rows(cdp_env, "select message_id from raw_events.events order by 1")
    assert got == [("m1",), ("m2",), ("m3",)]


def test_settled_file_without_final_newline_is_read_whole(cdp_env, events_dir):
    events_dir.mkdir()
    path = events_dir / "old.jsonl"
    path.write_text('{"type":"page","messageId":"p1"}\n{"type":"page","messageId":"p2"}')
    old = time.time() - 3600
    os.utime(path, (old, old))
    assert ingest_stream("events", "events").rows_loaded == 2


def test_malformed_lines_are_quarantined_and_neighbours_load(cdp_env, events_dir):
    events_dir.mkdir()
    good = [json.dumps({"type": "track", "event": "E", "messageId": f"g{i}"}) for i in range(3)]
    bad = ['{"type": "track", "messageId":', '["not", "an", "object"]', '{"type": "track"}']
    bad_ts = json.dumps({"type": "track", "messageId": "t1", "timestamp": "yesterday"})
    (events_dir / "mixed.jsonl").write_text(
        "\n".join([good[0], bad[0], good[1], bad[1], bad[2], bad_ts, good[2]]) + "\n"
    )
    result = ingest(sources=["events"])[0]
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (7, 3, 4)
    reasons = dict(
        rows(cdp_env, "select raw_record, reason from ops.quarantine where source = 'events'")
    )
    assert reasons[bad[0]] == "invalid JSON"
    assert reasons[bad[1]] == "not a JSON object"
    assert reasons[bad[2]] == "missing primary key message_id"
    assert reasons[bad_ts].startswith("timestamp: cannot read yesterday")
    assert scalar(cdp_env, "select count(*) from raw_events.events") == 3
    # quarantined lines are not read again: the file's cursor moved past them
    assert ingest_stream("events", "events").rows_read == 0
    assert scalar(cdp_env, "select count(*) from ops.quarantine") == 4


def test_missing_events_dir_skips_the_source(cdp_env, monkeypatch):
    monkeypatch.delenv("CDP_EVENTS_DIR", raising=False)
    result = ingest(sources=["events"])[0]
    assert result.status == "skipped"
    assert "CDP_EVENTS_DIR" in result.message
    assert scalar(cdp_env, "select status from ops.ingest_runs where source = 'events'") == (
        "skipped"
    )


def test_files_still_being_written_by_the_collector_are_left_alone(cdp_env, events_dir):
    events_dir.mkdir()
    line = json.dumps({"type": "track", "event": "E", "messageId": "c1"}) + "\n"
    (events_dir / "events-1.jsonl.open").write_text(line)
    (events_dir / "notes.json").write_text('{\n  "not": "events"\n}\n')
    assert ingest_stream("events", "events").rows_read == 0
    (events_dir / "events-1.jsonl.open").rename(events_dir / "events-1.jsonl")  # published
    assert ingest_stream("events", "events").rows_loaded == 1


def test_suppressed_people_are_dropped_and_counted_in_ingest_runs(cdp_env, events_dir):
    from connectors.loader import connect
    from connectors.suppression import hash_identifier

    events_dir.mkdir()
    lines = [
        {"type": "identify", "messageId": "s1", "userId": "7", "traits": {"email": "Gone@X.com"}},
        {"type": "track", "event": "E", "messageId": "s2", "anonymousId": "anon-gone"},
        {"type": "track", "event": "E", "messageId": "s3", "userId": "8"},
    ]
    (events_dir / "e.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    con = connect(cdp_env)
    con.execute("create schema if not exists ops")
    con.execute("create table ops.suppression_list (id_type varchar, id_value_hash varchar)")
    con.execute(
        "insert into ops.suppression_list values ('email', ?), ('anonymous_id', ?)",
        [hash_identifier("email", "gone@x.com"), hash_identifier("anonymous_id", "anon-gone")],
    )
    con.close()
    result = ingest_stream("events", "events")
    assert (result.rows_read, result.rows_loaded, result.rows_suppressed) == (3, 1, 2)
    assert rows(cdp_env, "select message_id from raw_events.events") == [("s3",)]
    assert scalar(cdp_env, "select rows_suppressed from ops.ingest_runs") == 2


def test_a_file_rewritten_before_its_cursor_moved_is_read_again_not_from_mid_line(
    cdp_env, events_dir
):
    # `cdp forget` rewrites event files; if it dies before moving the cursor, the old offset can
    # land inside a line of the shorter, since-appended file
    events_dir.mkdir()
    path = events_dir / "events-1.jsonl"

    def line(mid: str, pad: int = 0) -> str:
        return json.dumps({"type": "track", "event": "E", "messageId": mid, "p": "x" * pad}) + "\n"

    path.write_text(line("a", 200) + line("b") + line("c"))
    old_size = path.stat().st_size
    assert ingest_stream("events", "events").rows_loaded == 3
    path.write_text(line("b") + line("c") + line("d", 300) + line("e"))
    assert path.read_bytes()[old_size - 1 : old_size] != b"\n"  # the stale cursor is mid-line
    run = ingest_stream("events", "events")
    assert run.status == "ok"
    ids = [r[0] for r in rows(cdp_env, "select message_id from raw_events.events order by 1")]
    assert ids == ["a", "b", "c", "d", "e"]
    assert scalar(cdp_env, "select count(*) from ops.quarantine") == 0
