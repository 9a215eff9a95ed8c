"""The ingest entry points: source selection, skipping, run figures, the registry."""

from __future__ import annotations

import threading

import pytest

from connectors import settings
from connectors.base import ConnectorError, Page
from connectors.ingest import ingest, ingest_stream, prefetch
from connectors.registry import SOURCES, streams
from tests.connectors.helpers import rows


def test_registry_lists_every_source_and_stream():
    assert {"hubspot", "stripe", "zendesk", "events", "app", "files"} <= set(SOURCES)
    pairs = streams()
    for pair in [
        ("hubspot", "contacts"),
        ("hubspot", "companies"),
        ("stripe", "customers"),
        ("stripe", "charges"),
        ("zendesk", "users"),
        ("zendesk", "tickets"),
        ("events", "events"),
        ("app", "users"),
        ("app", "orders"),
    ]:
        assert pair in pairs


def test_every_source_without_configuration_is_skipped_not_crashed(cdp_env, monkeypatch, tmp_path):
    for var in [
        "HUBSPOT_ACCESS_TOKEN",
        "STRIPE_API_KEY",
        "ZENDESK_BASE_URL",
        "ZENDESK_EMAIL",
        "ZENDESK_API_TOKEN",
        "CDP_EVENTS_DIR",
        "CDP_APP_DB_URL",
    ]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CDP_FILES_CONFIG", str(tmp_path / "absent.yml"))
    results = ingest()
    assert results and {r.status for r in results} == {"skipped"}
    assert all(r.message for r in results)
    recorded = rows(cdp_env, "select source, stream, status from ops.ingest_runs order by 1, 2")
    assert recorded == sorted((r.source, r.stream, "skipped") for r in results)


def test_unknown_names_are_rejected(cdp_env):
    with pytest.raises(ValueError, match="unknown sources"):
        ingest(sources=["salesforce"])
    with pytest.raises(ValueError, match="unknown stream"):
        ingest_stream("app", "invoices")


def test_duckdb_path_defaults_under_the_project_root(monkeypatch, tmp_path):
    monkeypatch.delenv("CDP_DUCKDB_PATH", raising=False)
    monkeypatch.setenv("CDP_PROJECT_ROOT", str(tmp_path))
    assert settings.duckdb_path() == tmp_path / "data" / "cdp.duckdb"
    monkeypatch.setenv("CDP_DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    assert settings.duckdb_path() == tmp_path / "w.duckdb"


def _pages(n: int, fail_after: bool = False):
    for i in range(n):
        yield Page([f'{{"id": {i}}}'], {"i": i})
    if fail_after:
        raise ConnectorError("boom")


def test_prefetch_keeps_order_and_delivers_pages_before_an_error():
    got = []
    with pytest.raises(ConnectorError, match="boom"):
        for page in prefetch(_pages(7, fail_after=True), max_records=2):
            got.append(page.state["i"])
    assert got == list(range(7))


def test_closing_prefetch_early_stops_the_reader():
    before = {t.name for t in threading.enumerate()}
    pages = prefetch(_pages(10_000), max_records=2)
    assert next(pages).state == {"i": 0}
    pages.close()
    assert "ingest-reader" not in {t.name for t in threading.enumerate()} - before


def test_unexpected_errors_are_masked_before_they_are_stored(cdp_env, monkeypatch, tmp_path):
    from connectors.events import EventsConnector

    secret = "sk_live_do_not_leak_1234"
    monkeypatch.setenv("STRIPE_API_KEY", secret)
    monkeypatch.setenv("CDP_EVENTS_DIR", str(tmp_path))

    def explode(self, stream, state):
        raise RuntimeError(f"driver said: bad key {secret}")
        yield  # a generator, like every read()

    monkeypatch.setattr(EventsConnector, "read", explode)
    result = ingest_stream("events", "events")
    assert result.status == "failed"
    assert result.message == "RuntimeError: driver said: bad key ***"
    stored = rows(cdp_env, "select message from ops.ingest_runs")
    assert stored == [("RuntimeError: driver said: bad key ***",)]
