"""Run the dbt CLI of this venv against the project's dbt project and profile.

The stage commands (`cdp build`) and the privacy rebuild use this; Dagster runs dbt through
dagster-dbt's ``DbtCliResource`` with the same executable, project and profile.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from orchestration import settings

log = logging.getLogger(__name__)


def dbt_executable() -> str:
    """The dbt command line next to this interpreter (a venv's bin/), else on PATH: ``cdp-dbt``
    (dbt with Python's garbage collector tuned, orchestration/dbt_launcher.py) where installed,
    else ``dbt``."""
    for name in ("cdp-dbt", "dbt"):
        candidate = Path(sys.executable).parent / name
        if candidate.exists():
            return str(candidate)
    for name in ("cdp-dbt", "dbt"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("dbt is not installed in this environment: run `make install`")


def dbt(*args: str, check: bool = False) -> int:
    """Run ``dbt <args>`` in the dbt project with the project's profile; returns the exit code."""
    settings.export_env()
    cmd = [
        dbt_executable(),
        *args,
        "--project-dir",
        str(settings.dbt_project_dir()),
        "--profiles-dir",
        str(settings.dbt_profiles_dir()),
    ]
    log.info("running %s", " ".join(cmd[1:]))
    proc = subprocess.run(cmd, cwd=settings.dbt_project_dir(), env=os.environ.copy())
    if check and proc.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(args)} failed with exit code {proc.returncode}")
    return proc.returncode


def dbt_build(select: str | None = None) -> int:
    args = ["build"]
    if select:
        args += ["--select", select]
    return dbt(*args)


def dbt_on_command(
    db_path: str | Path,
    *args: str,
    project_dir: str | Path | None = None,
    target: str = "ci",
) -> tuple[list[str], dict[str, str], Path]:
    """The command line, environment and working folder of ``dbt <args>`` against the warehouse
    ``db_path``, with dbt's target and log folders beside it, so several warehouses (tests,
    benchmarks) never share dbt artifacts."""
    db_path = Path(db_path)
    project_dir = Path(project_dir) if project_dir else settings.dbt_project_dir()
    env = {**os.environ, "CDP_DUCKDB_PATH": str(db_path), "CDP_DBT_TARGET": target}
    cmd = [
        dbt_executable(),
        *args,
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(settings.dbt_profiles_dir()),
        "--target-path",
        str(db_path.parent / "dbt_target"),
        "--log-path",
        str(db_path.parent / "dbt_logs"),
    ]
    return cmd, env, project_dir


def dbt_on(
    db_path: str | Path,
    *args: str,
    project_dir: str | Path | None = None,
    target: str = "ci",
) -> subprocess.CompletedProcess:
    """Run ``dbt <args>`` against the warehouse ``db_path`` (see ``dbt_on_command``).

    Raises ``RuntimeError`` carrying dbt's output when dbt fails.
    """
    cmd, env, cwd = dbt_on_command(db_path, *args, project_dir=project_dir, target=target)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"dbt {' '.join(args)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
        )
    return proc
