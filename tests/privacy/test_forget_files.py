"""``forget`` reaches the files composable-cdp wrote outside the warehouse.

The files are written by the real writers: the collector's event log (``EventLog``), the trigger
firing log (``FiringLog``), the Files destination (CSV and Parquet, snapshot and change files).
The check is independent of the scanner under test: every line or row is searched for every
identifier the person's records carried (``tests.privacy.helpers``), plus their customer id and
the message ids of their events; every other line must come back byte for byte, in order.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from connectors.ingest import ingest
from connectors.loader import connect
from orchestration.demo.warehouse import load_raw
from orchestration.privacy import forget
from orchestration.privacy.files import TMP_SUFFIX
from orchestration.serve.triggers import Firing, FiringLog
from orchestration.serve.writer import OPEN_SUFFIX, EventLog, read_events
from reverse_etl.config import SyncConfig
from reverse_etl.destinations.base import Row
from reverse_etl.destinations.files import FilesDestination
from tests.conftest import AS_OF, REPO_ROOT, run_dbt
from tests.privacy.helpers import _leaves, cell_hits, clean_people, find_traces, person_traces

VARS = json.dumps({"cdp_as_of": AS_OF.strftime("%Y-%m-%d")})
MODELS_ONLY = ("--exclude-resource-type", "test", "--exclude-resource-type", "unit_test")
OTHERS = 40  # people besides the one forgotten whose lines must survive untouched


@pytest.fixture(scope="module")
def built(tmp_path_factory, small_demo):
    db = tmp_path_factory.mktemp("forget_files") / "cdp.duckdb"
    load_raw(db, small_demo)
    run_dbt(db, "build", *MODELS_ONLY, "--vars", VARS)
    return db


class Person:
    """What identifies the forgotten person in files: their traces, customer id, message ids."""

    def __init__(self, demo, db: Path, person: int) -> None:
        self.id = person
        self.traces = person_traces(demo, person)
        self.email = sorted(self.traces.emails)[0]
        con = connect(db, read_only=True)
        try:
            self.customer = con.execute(
                "select customer_id from marts.customer_identifiers "
                "where id_type = 'email' and id_value = ?",
                [self.email],
            ).fetchone()[0]
        finally:
            con.close()
        self.messages = self.traces.rows["raw_events.events"]

    def in_text(self, key: str, text: str) -> bool:
        for k, leaf in _leaves(key, text):
            if cell_hits(self.traces, k, leaf) or leaf == self.customer:
                return True
            if k in ("messageId", "message_id", "_key") and leaf in self.messages:
                return True
        return False

    def in_line(self, line: bytes) -> bool:
        return self.in_text("line", line.decode())

    def in_row(self, row: dict) -> bool:
        return any(v is not None and self.in_text(k, str(v)) for k, v in row.items())


def segment_message(row: dict) -> dict:
    message = {
        "type": row["type"],
        "messageId": row["message_id"],
        "timestamp": row["timestamp"].isoformat().replace("+00:00", "Z"),
        "properties": json.loads(row["properties"] or "{}"),
    }
    for column, key in (("event", "event"), ("name", "name"), ("user_id", "userId")):
        if row[column] is not None:
            message[key] = row[column]
    if row["anonymous_id"] is not None:
        message["anonymousId"] = row["anonymous_id"]
    if row["email"] is not None:
        message["traits"] = {"email": row["email"]}
    if row["page_path"] is not None:
        message["context"] = {"page": {"path": row["page_path"]}}
    return message


@pytest.fixture
def world(built, small_demo, tmp_path, monkeypatch):
    """A warehouse copy plus every kind of file, holding the person and forty others."""
    data = tmp_path / "data"
    data.mkdir()
    db = data / "cdp.duckdb"
    shutil.copy(built, db)
    events_dir, firings_dir, exports = data / "events", data / "trigger_firings", data / "exports"
    for name, value in {
        "CDP_DUCKDB_PATH": db,
        "CDP_EVENTS_DIR": events_dir,
        "CDP_TRIGGER_FIRINGS_DIR": firings_dir,
        "CDP_EXPORTS_DIR": exports,
        "CDP_SNAPSHOT_DIR": data / "snapshot",
        "CDP_PROJECT_ROOT": REPO_ROOT,
        "CDP_FORGET_ROTATE_TIMEOUT": "10",
    }.items():
        monkeypatch.setenv(name, str(value))
    clean = clean_people(small_demo)
    person = Person(small_demo, db, clean[0])
    events = small_demo.tables["events.events"]
    others = [p for p in events["_person_id"].unique(maintain_order=True).to_list()][:OTHERS]
    chosen = events.filter(pl.col("_person_id").is_in([person.id, *others]))
    messages = [segment_message(r) for r in chosen.drop("_person_id").to_dicts()]
    # their phone as someone typed it into a form, and someone else's order number that equals
    # the person's numeric user id: the first goes, the second stays
    digits = person.traces.phone_digits
    messages.append(
        {
            "type": "track",
            "event": "Form Submitted",
            "messageId": "form-1",
            "anonymousId": "anon-form-visitor",
            "properties": {"contact": f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"},
        }
    )
    numeric = sorted(person.traces.numeric_ids())
    if numeric:
        messages.append(
            {
                "type": "track",
                "event": "Order Completed",
                "messageId": "order-1",
                "userId": "someone-else-entirely",
                "properties": {"amount": int(numeric[0])},
            }
        )
    with EventLog(events_dir, rotate_bytes=4000) as event_log:
        for start in range(0, len(messages), 7):
            event_log.submit(messages[start : start + 7]).result()
    assert len(list(events_dir.glob("events-*.jsonl"))) > 3
    ingest(db, sources=["events"])  # the connector's offsets now point at every file's end

    con = connect(db, read_only=True)
    customers = con.execute(
        "select customer_id, email, phone, first_name from marts.customers "
        "where customer_id <> ? order by customer_id limit ?",
        [person.customer, OTHERS],
    ).fetchall()
    mine = con.execute(
        "select customer_id, email, phone, first_name from marts.customers where customer_id = ?",
        [person.customer],
    ).fetchone()
    con.close()
    firing_log = FiringLog(firings_dir)
    for i, (customer, *_rest) in enumerate([mine, *customers]):
        firing_log.append(_firing(customer, f"msg-x{i}"))
    for message_id in sorted(person.messages)[:3]:
        firing_log.append(_firing(person.customer, message_id))

    rows = [Row(c[0], {"email": c[1], "phone": c[2], "first_name": c[3]}) for c in customers]
    me = Row(mine[0], {"email": mine[1].upper(), "phone": mine[2], "first_name": mine[3]})
    for fmt in ("csv", "parquet"):
        sync = SyncConfig(
            name=f"crm_{fmt}",
            model="activation.sync_files__crm",
            destination="files",
            mode="upsert",
            identity_key="customer_id",
            fields={"email": "email", "phone": "phone", "first_name": "first_name"},
            options={"format": fmt},
        )
        dest = FilesDestination.from_config(sync)
        dest.write("upsert", [*rows[:20], me])
        dest.write("upsert", rows[20:])
        dest.write("update", [Row(me.key, {**me.fields, "first_name": 'Renamed, "quoted"\n'})])
    return db, data, person


def _firing(customer: str, message_id: str) -> Firing:
    return Firing(
        rule="welcome",
        customer_id=customer,
        message_id=message_id,
        event_type="track",
        event_name="Signed Up",
        action="webhook",
        status="delivered",
        received_at="2026-11-01T00:00:00.000Z",
        decided_at="2026-11-01T00:00:00.010Z",
    )


def file_contents(data: Path) -> dict[Path, bytes]:
    return {
        p: p.read_bytes()
        for p in sorted(data.rglob("*"))
        if p.is_file() and p.suffix in (".jsonl", ".csv", ".parquet", ".open", ".rejected")
    }


def expected_after(person: Person, path: Path, content: bytes):
    """What a file must hold once the person is gone, derived from its content before."""
    if path.suffix == ".parquet":
        frame = pl.read_parquet(io.BytesIO(content))
        keep = [not person.in_row(r) for r in frame.to_dicts()]
        return frame.filter(pl.Series(keep))
    if path.suffix == ".csv":
        records = list(csv.DictReader(io.StringIO(content.decode(), newline="")))
        return [r for r in records if not person.in_row(r)]
    return [line for line in content.splitlines(keepends=True) if not person.in_line(line)]


def actual(path: Path):
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    if path.suffix == ".csv":
        return list(csv.DictReader(io.StringIO(path.read_text(), newline="")))
    return path.read_bytes().splitlines(keepends=True)


def held(person: Person, path: Path) -> int:
    if path.suffix == ".parquet":
        return sum(person.in_row(r) for r in pl.read_parquet(path).to_dicts())
    if path.suffix == ".csv":
        records = csv.DictReader(io.StringIO(path.read_text(), newline=""))
        return sum(person.in_row(r) for r in records)
    return sum(person.in_line(line) for line in path.read_bytes().splitlines())


def same(a, b) -> bool:
    return a.equals(b) if isinstance(a, pl.DataFrame) else a == b


def their_events(db: Path, person: Person) -> int:
    """The person's raw events (a cheap stand-in for the full scan the first test makes)."""
    con = connect(db, read_only=True)
    try:
        keys = sorted(person.messages)
        marks = ", ".join("?" for _ in keys)
        sql = f"select count(*) from raw_events.events where message_id in ({marks})"
        return con.execute(sql, keys).fetchone()[0]
    finally:
        con.close()


def audit_rows(db: Path, request_id: str) -> list[tuple]:
    con = connect(db, read_only=True)
    try:
        return con.execute(
            "select step, status, table_name, rows_affected, identifiers, detail "
            'from ops.privacy_audit where request_id = ? order by "at"',
            [request_id],
        ).fetchall()
    finally:
        con.close()


def test_forget_rewrites_every_file_without_the_person_and_keeps_every_other_line(world):
    db, data, person = world
    before = file_contents(data)
    holding = {p: held(person, p) for p in before}
    assert {p.suffix for p, n in holding.items() if n} >= {".jsonl", ".csv", ".parquet"}
    assert any(n for p, n in holding.items() if "trigger_firings" in p.parts)
    expected = {p: expected_after(person, p, c) for p, c in before.items()}

    receipt = forget(person.email.upper(), db_path=db, destinations=False, rebuild=None)

    assert receipt.ok, receipt.describe()
    after = file_contents(data)
    assert set(after) == set(before)  # no file lost, none added (no temp file left behind)
    for path in before:
        assert held(person, path) == 0, path
        assert same(actual(path), expected[path]), path  # every other line, same bytes, in order
        if not holding[path]:
            assert after[path] == before[path], path  # untouched files are not rewritten
    # the stranger whose order number equals the person's user id keeps their event
    assert any(b'"order-1"' in c for c in after.values()) == bool(person.traces.numeric_ids())
    assert not any(b'"form-1"' in c for c in after.values())

    audit = audit_rows(db, receipt.request_id)
    by_file = {row[2]: row[3] for row in audit if row[0] == "delete_file_rows"}
    for path, n in holding.items():
        name = path.relative_to(data).as_posix()
        if n:
            assert by_file[name] == n, name
        else:
            assert name not in by_file, name
    verify = [row for row in audit if row[0] == "verify_files"]
    assert verify and verify[0][1] == "ok" and verify[0][3] == 0
    exports = [row[5] for row in audit if row[2] and row[2].startswith("exports/")]
    assert exports and all("beyond reach" in d for d in exports)
    # the receipts hold hashes only: nothing in the warehouse (audit included) names them
    con = connect(db, read_only=True)
    assert find_traces(con, person.traces) == {}
    con.close()

    # the connector's offsets moved with the rewrite: nothing is read again, nothing skipped
    again = ingest(db, sources=["events"])
    assert [r.rows_read for r in again] == [0]
    con = connect(db, read_only=True)
    offsets = json.loads(
        con.execute("select cursor from ops.connector_state where source = 'events'").fetchone()[0]
    )["files"]
    con.close()
    for key, offset in offsets.items():
        assert offset == (data / "events" / key).stat().st_size, key


def test_an_open_file_of_a_running_collector_is_published_then_rewritten(world):
    db, data, person = world
    events_dir = data / "events"
    others = [m for m in read_events(events_dir) if not person.in_text("line", json.dumps(m))]
    mine = [m for m in read_events(events_dir) if person.in_text("line", json.dumps(m))]
    for path in events_dir.glob("events-*.jsonl"):
        path.unlink()
    stop = threading.Event()
    written: list[str] = []
    fresh = iter(range(10**6))

    with EventLog(events_dir, rotate_seconds=3600) as live:
        live.submit(
            [{**m, "messageId": m["messageId"] + "-live"} for m in [*others, *mine]]
        ).result()
        assert list(events_dir.glob(f"*{OPEN_SUFFIX}"))

        def keep_writing() -> None:  # someone else's events keep arriving during the deletion
            while not stop.is_set():
                message_id = f"during-{next(fresh)}"
                live.submit(
                    [
                        {
                            "type": "track",
                            "event": "Tick",
                            "messageId": message_id,
                            "anonymousId": "anon-someone-else",
                        }
                    ]
                ).result()
                written.append(message_id)
                time.sleep(0.002)

        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            receipt = forget(person.email, db_path=db, destinations=False, rebuild=None)
        finally:
            stop.set()
            writer.join()
    assert receipt.ok, receipt.describe()
    stored = [m["messageId"] for m in read_events(events_dir)]
    assert len(stored) == len(set(stored))  # nothing doubled
    expected = [m["messageId"] + "-live" for m in others] + written
    assert sorted(stored) == sorted(expected)  # nothing of anyone else lost
    assert written  # the collector kept accepting while the file was rewritten
    for path in events_dir.glob("events-*"):
        assert held(person, path) == 0
    rewritten = [r for r in audit_rows(db, receipt.request_id) if r[0] == "delete_file_rows"]
    assert any(r[2].startswith("events/") and r[3] == len(mine) for r in rewritten)


def test_appends_during_a_rewrite_are_neither_lost_nor_doubled(world):
    db, data, person = world
    firings = FiringLog(data / "trigger_firings")
    stop = threading.Event()
    appended: list[str] = []

    def append() -> None:
        while not stop.is_set():
            firing = _firing("someone-else", f"m-{len(appended)}")
            firings.append(firing)
            appended.append(firing.firing_id)

    thread = threading.Thread(target=append)
    thread.start()
    try:
        time.sleep(0.05)
        receipt = forget(person.email, db_path=db, destinations=False, rebuild=None)
        time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    assert receipt.ok, receipt.describe()
    ids = [f["firing_id"] for f in firings.read() if f["customer_id"] == "someone-else"]
    assert sorted(ids) == sorted(appended) and len(appended) > 10
    assert not any(f["customer_id"] == person.customer for f in firings.read())


CRASHER = textwrap.dedent(
    """
    import os, sys, time
    from orchestration.privacy import forget
    from orchestration.privacy.files import TMP_SUFFIX

    real, passes = os.replace, int(sys.argv[3])

    def replace(src, dst):
        global passes
        if str(src).endswith(TMP_SUFFIX):
            if passes == 0:
                open(sys.argv[4], "w").write(str(dst))
                time.sleep(600)  # killed here: the new file is written and fsynced, not renamed
            passes -= 1
        return real(src, dst)

    os.replace = replace
    forget(sys.argv[1], db_path=sys.argv[2], destinations=False, rebuild=None)
    """
)


def test_a_kill_between_write_and_rename_leaves_old_or_new_files_and_a_rerun_completes(
    world, tmp_path
):
    db, data, person = world
    renamed_before_kill = 2  # two files replaced, the third written but not renamed
    before = file_contents(data)
    expected = {p: expected_after(person, p, c) for p, c in before.items()}
    marker = tmp_path / "killed-at"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHER, person.email, str(db), str(renamed_before_kill), marker],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "the forget process ended before the rename"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    killed_at = Path(marker.read_text())
    assert (killed_at.with_name(f".{killed_at.name}{TMP_SUFFIX}")).exists()
    new = 0
    for path, content in before.items():
        now = path.read_bytes()
        if now != content:
            assert same(actual(path), expected[path]), path  # a whole new file ...
            new += 1  # ... never a torn one
    assert new == renamed_before_kill
    assert their_events(db, person)  # the warehouse transaction never committed

    receipt = forget(person.email, db_path=db, destinations=False, rebuild=None)

    assert receipt.ok, receipt.describe()
    for path in before:
        assert same(actual(path), expected[path]), path
    assert set(file_contents(data)) == set(before)
    assert not list(data.rglob(f"*{TMP_SUFFIX}"))
    assert their_events(db, person) == 0


def test_a_file_that_cannot_be_rewritten_rolls_the_warehouse_back_until_a_rerun(world):
    db, data, person = world
    snapshot = data / "exports" / "crm_parquet" / "snapshot.parquet"
    blocker = snapshot.with_name(f".{snapshot.name}{TMP_SUFFIX}")
    blocker.mkdir()  # a real OS failure where the temp file must go
    old = snapshot.read_bytes()

    failed = forget(person.email, db_path=db, destinations=False, rebuild=None)

    assert not failed.ok
    assert snapshot.read_bytes() == old  # the old file, whole
    audit = audit_rows(db, failed.request_id)
    assert ("delete_file_rows", "failed", "exports/crm_parquet/snapshot.parquet") in {
        r[:3] for r in audit
    }
    assert any(r[0] == "delete_rows" and "rolled back" in r[5] for r in audit)
    assert their_events(db, person)  # still there: a rerun resolves them in full

    blocker.rmdir()
    receipt = forget(person.email, db_path=db, destinations=False, rebuild=None)

    assert receipt.ok, receipt.describe()
    assert held(person, snapshot) == 0
    for path in file_contents(data):
        assert held(person, path) == 0, path
    assert their_events(db, person) == 0
