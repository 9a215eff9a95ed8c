"""Fixtures shared by every test package: a generated data set, a warehouse, dbt runs.

Each test gets its own DuckDB file under tmp_path and its own CDP_* environment, so tests run
in parallel (pytest-xdist) without sharing state.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.demo.generator import DemoData, generate

REPO_ROOT = Path(__file__).resolve().parent.parent
AS_OF = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def run_dbt(
    db_path: Path, *args: str, project_dir: Path | None = None
) -> subprocess.CompletedProcess:
    """Run the venv's dbt against ``db_path``; fails the test with dbt's output on error."""
    project_dir = project_dir or REPO_ROOT / "dbt_project"
    env = {**os.environ, "CDP_DUCKDB_PATH": str(db_path), "CDP_DBT_TARGET": "ci"}
    dbt = str(Path(sys.executable).parent / "dbt")
    proc = subprocess.run(
        [
            dbt,
            *args,
            "--project-dir",
            str(project_dir),
            "--profiles-dir",
            str(REPO_ROOT),
            "--target-path",
            str(Path(db_path).parent / "dbt_target"),
            "--log-path",
            str(Path(db_path).parent / "dbt_logs"),
        ],
        cwd=project_dir,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.fail(f"dbt {' '.join(args)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}")
    return proc


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
