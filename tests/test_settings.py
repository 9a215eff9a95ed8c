"""Settings: one warehouse path for every entry point; environment changes that undo themselves."""

from __future__ import annotations

import os

from orchestration import settings


def test_temporary_environ_sets_unsets_and_restores(monkeypatch) -> None:
    monkeypatch.setenv("CDP_TEST_KEEP", "before")
    monkeypatch.delenv("CDP_TEST_NEW", raising=False)
    with settings.temporary_environ(CDP_TEST_KEEP=None, CDP_TEST_NEW="set"):
        assert "CDP_TEST_KEEP" not in os.environ
        assert os.environ["CDP_TEST_NEW"] == "set"
    assert os.environ["CDP_TEST_KEEP"] == "before"
    assert "CDP_TEST_NEW" not in os.environ


def test_duckdb_path_follows_the_variable(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CDP_DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    assert settings.duckdb_path() == (tmp_path / "w.duckdb").resolve()
    monkeypatch.delenv("CDP_DUCKDB_PATH")
    monkeypatch.setenv("CDP_PROJECT_ROOT", str(tmp_path))
    assert settings.duckdb_path() == (tmp_path / "data" / "cdp.duckdb").resolve()
