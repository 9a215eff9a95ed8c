"""Two runs started at the same moment on one warehouse both succeed: their writing steps take
turns (writer pool + file lock) instead of failing on DuckDB's "Could not set lock on file"."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import duckdb
from dagster import DagsterEventType, DagsterInstance

from orchestration.defs.resources import file_lock, lock_path
from tests.conftest import REPO_ROOT
from tests.orchestration.conftest import FILE_STREAMS

SELECTION = [*FILE_STREAMS, "staging/stg_events__events"]


def _start(selection: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.orchestration.run_once", *selection],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


LOCK_LINE = re.compile(r"warehouse lock (\S+) exclusive (acquired|released) at ([0-9.]+)")


def _finish(proc: subprocess.Popen) -> dict:
    """The run's summary, plus ``held``: the spans its writing steps held the warehouse lock,
    as the holder logged them (acquired after ``flock`` returned, released before the close)."""
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, f"run failed:\n{out[-3000:]}\n{err[-5000:]}"
    summary = json.loads(out.strip().splitlines()[-1])
    held, acquired = [], None
    for _, what, at in LOCK_LINE.findall(err):
        if what == "acquired":
            assert acquired is None, "acquired twice without a release"
            acquired = float(at)
        else:
            assert acquired is not None, "released without an acquire"
            held.append((acquired, float(at)))
            acquired = None
    assert acquired is None, "a lock was never released"
    summary["held"] = held
    return summary


def _writer_steps(instance: DagsterInstance, run_id: str) -> list[tuple[str, float, float]]:
    starts, spans = {}, []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            spans.append((event.step_key, starts[event.step_key], entry.timestamp))
    return spans


def test_two_runs_started_together_both_succeed(file_sources: Path, small_demo) -> None:
    first, second = _start(SELECTION), _start(SELECTION)
    a, b = _finish(first), _finish(second)
    assert a["success"] and b["success"]
    assert set(a["materialized"]) == set(b["materialized"]) == set(SELECTION)
    # they really ran at the same time: each started before the other finished
    assert a["started"] < b["finished"] and b["started"] < a["finished"]

    # ... every writing step held the warehouse lock, and no holding of one run overlapped a
    # holding of the other (a step's own span may: it starts, then waits for the lock)
    home = Path(os.environ["DAGSTER_HOME"])
    with DagsterInstance.from_config(str(home)) as instance:
        steps_a = _writer_steps(instance, a["run_id"])
        steps_b = _writer_steps(instance, b["run_id"])
    assert len(steps_a) == len(steps_b) == len(SELECTION)
    assert len(a["held"]) >= len(steps_a) and len(b["held"]) >= len(steps_b)
    for start_a, end_a in a["held"]:
        for start_b, end_b in b["held"]:
            assert end_a <= start_b or end_b <= start_a, "the two runs held the lock together"
    # each holding lies inside one of its run's writing steps
    for run, steps in ((a, steps_a), (b, steps_b)):
        for start, end in run["held"]:
            assert any(s <= start and end <= e for _, s, e in steps), (start, end, steps)

    # loaded once: the second run found every message already there (keyed upserts)
    con = duckdb.connect(str(file_sources), read_only=True)
    loaded = con.execute("select count(*), count(distinct message_id) from raw_events.events")
    total, distinct = loaded.fetchone()
    con.close()
    assert total == distinct == small_demo.tables["events.events"]["message_id"].n_unique()


def _started_steps(home: Path) -> list[tuple[str, float]]:
    with DagsterInstance.from_config(str(home)) as instance:
        return [
            (e.dagster_event.step_key, e.timestamp)
            for run in instance.get_runs()
            for e in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_START)
        ]


def test_a_run_waits_for_the_writer_lock(file_sources: Path) -> None:
    """While another process holds the warehouse, a run's writing step waits, then succeeds."""
    home = Path(os.environ["DAGSTER_HOME"])
    with file_lock(lock_path(file_sources), exclusive=True):
        proc = _start(["raw_events/events"])
        deadline = time.monotonic() + 120
        while not _started_steps(home) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.5)
        time.sleep(2)  # the step has started; it must now be blocked on the lock
        assert proc.poll() is None, "the step did not wait for the warehouse lock"
        released = time.time()
    result = _finish(proc)
    assert result["success"]
    with DagsterInstance.from_config(str(home)) as instance:
        [(step, started, finished)] = _writer_steps(instance, result["run_id"])
    assert step == "raw_events__events" and started < released < finished
