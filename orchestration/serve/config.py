"""Where the serving processes read their configuration: environment variables, in one place.

Secrets (write keys, the API token, webhook URLs) are read here and handed to the components,
never logged; paths default to folders beside the warehouse file so a project keeps its data in
one ``data/`` directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from orchestration import settings

PACKAGE_DIR = Path(__file__).resolve().parent


def env(name: str) -> str | None:
    """An environment variable, with blank treated as absent."""
    value = os.environ.get(name)
    return value.strip() if value and value.strip() else None


def events_dir() -> Path:
    """``CDP_EVENTS_DIR``, else ``data/events`` beside the warehouse."""
    configured = env("CDP_EVENTS_DIR")
    return Path(configured) if configured else settings.data_dir() / "events"


def write_keys() -> frozenset[str]:
    """The write keys the collector accepts (``CDP_WRITE_KEYS``, comma-separated)."""
    return frozenset(k.strip() for k in (env("CDP_WRITE_KEYS") or "").split(",") if k.strip())


def api_token() -> str | None:
    return env("CDP_API_TOKEN")


def snapshot_dir() -> Path:
    """``CDP_SNAPSHOT_DIR``, else ``data/snapshot`` beside the warehouse."""
    configured = env("CDP_SNAPSHOT_DIR")
    return Path(configured) if configured else settings.data_dir() / "snapshot"


def triggers_path() -> Path:
    """``CDP_TRIGGERS_FILE``, else the rules shipped with the package (``serve/triggers.yml``)."""
    configured = env("CDP_TRIGGERS_FILE")
    return Path(configured) if configured else PACKAGE_DIR / "triggers.yml"


def firings_dir() -> Path:
    """Trigger firings are logged as JSONL here (``data/trigger_firings``) for the pipeline."""
    configured = env("CDP_TRIGGER_FIRINGS_DIR")
    return Path(configured) if configured else settings.data_dir() / "trigger_firings"


def rotate_bytes() -> int:
    return int(env("CDP_EVENTS_ROTATE_BYTES") or 64 * 1024 * 1024)


def rotate_seconds() -> float:
    return float(env("CDP_EVENTS_ROTATE_SECONDS") or 60)
