"""Files connector: CSV, Parquet and JSON lines declared in YAML, loaded once per file version."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest
import yaml

from connectors.ingest import ingest
from connectors.registry import streams
from tests.connectors.helpers import rows, scalar


@pytest.fixture
def files_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    drop = tmp_path / "drop"
    drop.mkdir()
    config = {
        "streams": [
            {
                "name": "leads",
                "glob": "drop/leads_*.csv",
                "primary_key": "lead_id",
                "columns": {"lead_id": "varchar", "email": "varchar", "score": "bigint"},
                "identifiers": {"email": "email"},
            },
            {"name": "scores", "glob": "drop/*.parquet", "primary_key": "id"},
            {"name": "notes", "glob": "drop/**/*.jsonl", "primary_key": "id"},
        ]
    }
    path = tmp_path / "files.yml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("CDP_FILES_CONFIG", str(path))
    return drop


def test_files_streams_are_registered_from_yaml(files_config):
    pl.DataFrame({"id": [1], "value": [0.5]}).write_parquet(files_config / "s.parquet")
    found = [s for s in streams() if s[0] == "files"]
    assert found == [("files", "leads"), ("files", "scores"), ("files", "notes")]


def test_csv_parquet_jsonl_load_once_and_reload_on_change(cdp_env, files_config):
    (files_config / "leads_1.csv").write_text(
        "lead_id,email,score,extra\nL1,a@x.com,10,foo\nL2,b@x.com,oops,bar\nL3,,7,\n"
    )
    (files_config / "leads_2.csv").write_text("lead_id,email,score\nL3,c@x.com,8\n")
    pl.DataFrame({"id": [1, 2], "value": [0.5, 1.5]}).write_parquet(files_config / "s.parquet")
    (files_config / "sub").mkdir()
    (files_config / "sub" / "n.jsonl").write_text(
        json.dumps({"id": 1, "text": "hi"}) + "\n{broken\n"
    )
    results = {r.stream: r for r in ingest(sources=["files"])}
    assert {k: (r.status, r.rows_loaded, r.rows_quarantined) for k, r in results.items()} == {
        "leads": ("ok", 2, 1),  # L1; L3 from the second file replaces the first's L3
        "scores": ("ok", 2, 0),
        "notes": ("ok", 1, 1),
    }
    assert rows(cdp_env, "select lead_id, email, score from raw_files.leads order by 1") == [
        ("L1", "a@x.com", 10),
        ("L3", "c@x.com", 8),
    ]
    assert scalar(
        cdp_env, "select _record->>'$.extra' from raw_files.leads where lead_id='L1'"
    ) == ("foo")
    # columns not declared: taken from the file, as text
    assert rows(cdp_env, "select id, value from raw_files.scores order by 1") == [
        ("1", "0.5"),
        ("2", "1.5"),
    ]
    reasons = rows(cdp_env, "select stream, reason from ops.quarantine order by 1")
    assert reasons == [("leads", "score: cannot read oops as bigint"), ("notes", "invalid JSON")]

    assert sum(r.rows_read for r in ingest(sources=["files"])) == 0
    (files_config / "leads_2.csv").write_text("lead_id,email,score\nL3,c@x.com,9\nL4,d@x.com,1\n")
    os.utime(files_config / "leads_2.csv", (1, 1))  # a different version, even if same size
    again = {r.stream: r.rows_read for r in ingest(sources=["files"])}
    assert again == {"leads": 2, "scores": 0, "notes": 0}
    assert rows(cdp_env, "select lead_id, score from raw_files.leads order by 1") == [
        ("L1", 10),
        ("L3", 9),
        ("L4", 1),
    ]


def test_unreadable_file_is_quarantined_not_fatal(cdp_env, files_config):
    (files_config / "leads_ok.csv").write_text("lead_id,email,score\nL1,a@x.com,1\n")
    (files_config / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    results = {r.stream: r for r in ingest(sources=["files"])}
    assert results["leads"].rows_loaded == 1
    assert (results["scores"].status, results["scores"].rows_quarantined) == ("ok", 1)
    reason = scalar(cdp_env, "select reason from ops.quarantine where stream = 'scores'")
    assert reason.startswith("cannot read broken.parquet")


def test_no_declared_streams_skips_files(cdp_env, tmp_path, monkeypatch):
    empty = tmp_path / "empty.yml"
    empty.write_text("streams: []\n")
    monkeypatch.setenv("CDP_FILES_CONFIG", str(empty))
    assert ingest(sources=["files"]) == []
    assert [s for s in streams() if s[0] == "files"] == []


def test_a_broken_files_yaml_fails_that_source_only(cdp_env, tmp_path, monkeypatch):
    bad = tmp_path / "bad.yml"
    bad.write_text("streams:\n  - name: leads\n")  # no glob, no primary key
    monkeypatch.setenv("CDP_FILES_CONFIG", str(bad))
    monkeypatch.setenv("CDP_EVENTS_DIR", str(tmp_path))
    results = ingest(sources=["events", "files"])
    assert [(r.source, r.status) for r in results] == [("events", "ok"), ("files", "failed")]
    assert "glob and primary_key" in results[1].message
    assert ("events", "events") in streams() and not [s for s in streams() if s[0] == "files"]
