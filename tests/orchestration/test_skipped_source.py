"""A source without credentials is skipped, and the models over it still build (empty)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.loader import connect
from orchestration.runner import run_all

CREDENTIALS = ("HUBSPOT_ACCESS_TOKEN", "HUBSPOT_BASE_URL")


def test_source_without_credentials_is_skipped_and_staging_still_builds(
    file_sources: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    summary = run_all(["raw_hubspot/contacts", "staging/stg_hubspot__contacts"])
    assert summary.success, summary.failure
    ingest = summary.assets["raw_hubspot/contacts"]
    assert ingest["status"] == "skipped" and ingest["rows_loaded"] == 0
    assert "HUBSPOT" in ingest["message"]
    assert summary.assets["staging/stg_hubspot__contacts"]["dagster/row_count"] == 0
    con = connect(file_sources, read_only=True)
    assert con.execute("select count(*) from staging.stg_hubspot__contacts").fetchone() == (0,)
    con.close()
