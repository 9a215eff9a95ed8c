"""Killing the collector (SIGKILL, no shutdown hook) loses no event it acknowledged."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import duckdb
import pytest
import requests

from connectors.ingest import ingest
from orchestration.serve.writer import OPEN_SUFFIX, read_events
from tests.serve.conftest import WRITE_KEY

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmp_path: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "CDP_EVENTS_DIR": str(tmp_path / "events"),
        "CDP_WRITE_KEYS": f"other-key,{WRITE_KEY}",
        "CDP_DUCKDB_PATH": str(tmp_path / "cdp.duckdb"),
        "CDP_SNAPSHOT_DIR": str(tmp_path / "snapshot"),
        "CDP_TRIGGER_FIRINGS_DIR": str(tmp_path / "firings"),
        "CDP_EVENTS_ROTATE_SECONDS": "3600",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", f"from orchestration.serve.app import serve; serve(port={port})"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                return proc
        except requests.ConnectionError:
            time.sleep(0.05)
        if proc.poll() is not None:
            break
    proc.kill()
    pytest.fail(f"collector did not start: {proc.stderr.read().decode()[-2000:]}")


def test_sigkill_after_200_loses_no_acknowledged_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1/batch"
    proc = _start(tmp_path, port)
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sender() -> None:
        session = requests.Session()
        while not stop.is_set():
            batch = [
                {"type": "track", "event": "Tick", "userId": "u", "messageId": uuid.uuid4().hex}
                for _ in range(20)
            ]
            try:
                r = session.post(url, json={"batch": batch}, auth=(WRITE_KEY, ""), timeout=5)
            except requests.RequestException:
                return  # the collector died: this batch was never acknowledged
            if r.status_code == 200:
                with lock:
                    acked.extend(e["messageId"] for e in batch)

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    while len(acked) < 2000 and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # mid-stream: requests are in flight
    proc.wait()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 2000
    # the killed process left its file open: recovery, not a clean shutdown, must publish it
    assert list((tmp_path / "events").glob(f"*{OPEN_SUFFIX}"))

    proc = _start(tmp_path, port)
    try:
        after = {"type": "track", "event": "After", "userId": "u", "messageId": "after-restart"}
        r = requests.post(url, json={"batch": [after]}, auth=(WRITE_KEY, ""), timeout=5)
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert not list((tmp_path / "events").glob(f"*{OPEN_SUFFIX}"))

    stored = [e["messageId"] for e in read_events(tmp_path / "events")]
    assert set(acked) | {"after-restart"} <= set(stored)
    assert len(stored) == len(set(stored))  # nothing doubled either

    monkeypatch.setenv("CDP_EVENTS_DIR", str(tmp_path / "events"))
    db_path = tmp_path / "cdp.duckdb"
    assert [r.status for r in ingest(db_path, sources=["events"])] == ["ok"]
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        loaded = {r[0] for r in con.execute("select message_id from raw_events.events").fetchall()}
    finally:
        con.close()
    assert loaded == set(stored)
