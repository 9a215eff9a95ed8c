"""Where things are: the project root, the warehouse file, the dbt project, the Dagster home.

Every entry point (CLI, Dagster definitions, dbt profile) reads the same environment variables,
so a user who sets ``CDP_DUCKDB_PATH`` once gets the same warehouse everywhere.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """The checkout (or a copy of it) holding dbt_project/ and data/."""
    return Path(os.environ.get("CDP_PROJECT_ROOT") or PACKAGE_ROOT).resolve()


def duckdb_path() -> Path:
    """The warehouse file: ``CDP_DUCKDB_PATH``, else ``data/cdp.duckdb`` under the project root."""
    configured = os.environ.get("CDP_DUCKDB_PATH")
    path = Path(configured) if configured else project_root() / "data" / "cdp.duckdb"
    return path.resolve()


def dbt_project_dir() -> Path:
    return Path(os.environ.get("CDP_DBT_PROJECT_DIR") or project_root() / "dbt_project").resolve()


def dbt_profiles_dir() -> Path:
    return Path(os.environ.get("DBT_PROFILES_DIR") or project_root()).resolve()


def data_dir() -> Path:
    return duckdb_path().parent


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or project_root() / ".dagster_home").resolve()


def export_env() -> None:
    """Pin the resolved paths in the environment so subprocesses (dbt, Dagster) agree."""
    os.environ["CDP_PROJECT_ROOT"] = str(project_root())
    os.environ["CDP_DUCKDB_PATH"] = str(duckdb_path())
    duckdb_path().parent.mkdir(parents=True, exist_ok=True)


def _apply_environ(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextlib.contextmanager
def temporary_environ(**values: str | None) -> Iterator[None]:
    """Set (or, with None, unset) variables for the duration of the block, then restore them:
    in-process runs and benchmarks must not change the environment of whoever started them."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        _apply_environ(values)
        yield
    finally:
        _apply_environ(saved)
