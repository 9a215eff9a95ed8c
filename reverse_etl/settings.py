"""Where reverse ETL reads its configuration: environment variables only, in this one module.

Destination credentials and endpoints are read here so that a review of what leaves the process
starts and ends in one file; the engine and destinations receive values, never ``os.environ``.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def env(name: str) -> str | None:
    """An environment variable, blank treated as absent."""
    value = os.environ.get(name)
    return value.strip() if value and value.strip() else None


def project_root() -> Path:
    return Path(env("CDP_PROJECT_ROOT") or PACKAGE_ROOT).resolve()


def duckdb_path() -> Path:
    """The warehouse file, the same one connectors and dbt use."""
    try:
        from connectors.settings import duckdb_path as connectors_duckdb_path
    except ImportError:  # pragma: no cover - connectors is part of the same distribution
        configured = env("CDP_DUCKDB_PATH")
        return (
            Path(configured) if configured else project_root() / "data" / "cdp.duckdb"
        ).resolve()
    return connectors_duckdb_path()


def dbt_project_dir() -> Path:
    return Path(env("CDP_DBT_PROJECT_DIR") or project_root() / "dbt_project").resolve()


def exports_dir() -> Path:
    """Where the Files destination writes when a sync names a relative path."""
    return Path(env("CDP_EXPORTS_DIR") or duckdb_path().parent / "exports").resolve()
