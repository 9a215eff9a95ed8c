"""A collector on a real socket, with its own folders, keys, snapshot and Slack receiver."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestration.demo.fakes.webhook import WebhookReceiver
from orchestration.serve.app import ServerThread, create_app
from orchestration.serve.snapshot import refresh
from orchestration.serve.triggers import FiringLog
from tests.serve.fixtures import build_marts

WRITE_KEY = "test-write-key"
API_TOKEN = "test-api-token"
RULES = Path(__file__).resolve().parents[2] / "orchestration" / "serve" / "triggers.yml"
N_CUSTOMERS = 200


@dataclass
class Running:
    url: str
    server: ServerThread
    events_dir: Path
    snapshot_dir: Path
    firings: FiringLog
    slack: WebhookReceiver
    db_path: Path

    @property
    def log(self):
        return self.server.collector.log

    @property
    def triggers(self):
        return self.server.collector.triggers


@pytest.fixture(scope="module")
def marts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse with the four serving marts (built once per module) and its snapshot."""
    folder = tmp_path_factory.mktemp("marts")
    db_path = folder / "cdp.duckdb"
    build_marts(db_path, N_CUSTOMERS)
    refresh(db_path, folder / "snapshot")
    return db_path


@pytest.fixture
def running(tmp_path: Path, marts: Path) -> Iterator[Running]:
    slack = WebhookReceiver(secret="").start()
    firings_dir = tmp_path / "firings"
    app = create_app(
        events_dir=tmp_path / "events",
        write_keys={WRITE_KEY},
        api_token=API_TOKEN,
        snapshot_dir=marts.parent / "snapshot",
        triggers_path=RULES,
        firings_dir=firings_dir,
        slack_url=slack.url + "/services/T000/B000/XXXX",
        webhook_secret="",
        rotate_seconds=3600,
    )
    server = ServerThread(app).start()
    try:
        yield Running(
            url=server.url,
            server=server,
            events_dir=tmp_path / "events",
            snapshot_dir=marts.parent / "snapshot",
            firings=FiringLog(firings_dir),
            slack=slack,
            db_path=marts,
        )
    finally:
        server.stop()
        slack.stop()
