"""Fixtures shared by every test package: a generated data set, a warehouse, dbt runs.

Each test gets its own DuckDB file under tmp_path and its own CDP_* environment, so tests run
in parallel (pytest-xdist) without sharing state.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from orchestration import dbt_server
from orchestration.dbt_cli import dbt_on
from orchestration.demo.generator import DemoData, generate

REPO_ROOT = Path(__file__).resolve().parent.parent
AS_OF = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def run_dbt(
    db_path: Path, *args: str, project_dir: Path | None = None
) -> subprocess.CompletedProcess:
    """Run the venv's dbt against ``db_path``; fails the test with dbt's output on error."""
    try:
        return dbt_on(db_path, *args, project_dir=project_dir or REPO_ROOT / "dbt_project")
    except RuntimeError as exc:
        pytest.fail(str(exc))


_SAVED_SERVER_ENV: dict[str, str | None] = {}


def pytest_configure(config: pytest.Config) -> None:
    """dbt commands of this test process (collection included: loading the Dagster definitions
    parses the dbt project) share a warm dbt server of their own (orchestration/dbt_server.py),
    with its socket in a private temporary folder; it is stopped when the session ends, and
    stops itself after two idle minutes should it outlive a crashed session."""
    for key in (dbt_server.ENV_DIR, dbt_server.ENV_IDLE):
        _SAVED_SERVER_ENV[key] = os.environ.get(key)
    os.environ[dbt_server.ENV_DIR] = tempfile.mkdtemp(prefix="cdp-dbt-server-")  # mode 0700
    os.environ[dbt_server.ENV_IDLE] = "120"


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = Path(os.environ.get(dbt_server.ENV_DIR, ""))
    if _SAVED_SERVER_ENV and folder.is_dir():
        for sock in folder.glob("*.sock"):
            dbt_server.stop(sock)
        shutil.rmtree(folder, ignore_errors=True)
    for key, value in _SAVED_SERVER_ENV.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def small_demo() -> DemoData:
    """300 people, pinned to a fixed as_of so time-relative logic is reproducible."""
    return generate(300, seed=11, as_of=AS_OF)


@pytest.fixture
def cdp_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated project environment: its own warehouse file and data folder."""
    db_path = tmp_path / "cdp.duckdb"
    monkeypatch.setenv("CDP_DUCKDB_PATH", str(db_path))
    monkeypatch.setenv("CDP_PROJECT_ROOT", str(REPO_ROOT))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    return db_path
