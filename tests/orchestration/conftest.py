"""Fixtures for the orchestration tests: file-based sources, a project-configured instance.

The events and product-database sources need no fake HTTP server (JSON-lines files and a SQLite
file), so tests that only need *some* real writes (concurrency, UI-launched runs) use them.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from orchestration.demo.generator import DemoData
from orchestration.demo.sources import write_app_sqlite, write_events
from orchestration.ui import prepare_home

FILE_STREAMS = ["raw_events/events", "raw_app/users", "raw_app/orders"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_file_sources(demo: DemoData, folder: Path) -> dict[str, str]:
    """Event files and the product database on disk; returns the env vars that point at them."""
    events = folder / "events"
    write_events(demo, events)
    return {
        "CDP_EVENTS_DIR": str(events),
        "CDP_APP_DB_URL": write_app_sqlite(demo, folder / "app.sqlite"),
    }


@pytest.fixture
def file_sources(cdp_env: Path, small_demo: DemoData, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``cdp_env`` plus the file sources and an instance holding the shipped dagster.yaml."""
    for key, value in write_file_sources(small_demo, cdp_env.parent).items():
        monkeypatch.setenv(key, value)
    prepare_home(cdp_env.parent / "dagster_home")
    return cdp_env
