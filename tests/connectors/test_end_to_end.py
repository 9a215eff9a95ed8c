"""Every source at once, as ``cdp ingest`` runs them, and dbt's staging layer on the result."""

from __future__ import annotations

import contextlib

from connectors.ingest import ingest
from orchestration.demo.sources import write_app_sqlite, write_events
from tests.conftest import run_dbt
from tests.connectors.fakes import FAKES, serve
from tests.connectors.helpers import assert_raw_equals_source, rows


def test_ingest_all_sources_then_dbt_staging_builds(small_demo, cdp_env, tmp_path, monkeypatch):
    write_events(small_demo, tmp_path / "events")
    monkeypatch.setenv("CDP_EVENTS_DIR", str(tmp_path / "events"))
    monkeypatch.setenv("CDP_APP_DB_URL", write_app_sqlite(small_demo, tmp_path / "app.sqlite"))
    monkeypatch.setenv("CDP_FILES_CONFIG", str(tmp_path / "no-files.yml"))
    # every table the generator makes, from every source: the API fakes, event files, the app DB
    all_tables = list(small_demo.tables)
    with contextlib.ExitStack() as stack:
        for vendor in FAKES:
            stack.enter_context(serve(vendor, small_demo, monkeypatch))
        results = ingest()
        assert {(r.source, r.status) for r in results} == {
            (table.split(".")[0], "ok") for table in all_tables
        }
        for table in all_tables:
            assert_raw_equals_source(cdp_env, small_demo, table)
        again = ingest()
        assert sum(r.rows_loaded for r in again) == 0
    runs = rows(cdp_env, "select count(*), count(distinct run_id) from ops.ingest_runs")
    assert runs == [(2 * len(all_tables), 2)]
    run_dbt(cdp_env, "build", "--select", "staging")
