"""The event-file sensor launches once per change; the failure alert reaches a Slack-compatible
webhook with the failing step and without secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    RunRequest,
    SkipReason,
    asset,
    build_run_status_sensor_context,
    build_sensor_context,
    materialize,
)

from orchestration.definitions import defs
from orchestration.defs.sensors import failure_alert_sensor, scan_event_files
from orchestration.demo.fakes.webhook import WebhookReceiver
from orchestration.demo.sources import write_events


def _evaluate(sensor, cursor: str | None):
    context = build_sensor_context(cursor=cursor, instance=DagsterInstance.ephemeral())
    result = sensor(context)
    return result, context.cursor


def test_new_event_files_trigger_one_run_per_change(small_demo, tmp_path, monkeypatch) -> None:
    folder = tmp_path / "events"
    monkeypatch.setenv("CDP_EVENTS_DIR", str(folder))
    sensor = defs.resolve_sensor_def("new_event_files")
    folder.mkdir()
    result, cursor = _evaluate(sensor, None)
    assert isinstance(result, SkipReason)

    files = write_events(small_demo, folder)
    first, cursor = _evaluate(sensor, cursor)
    assert isinstance(first, RunRequest)
    assert first.tags["cdp/event_files"] == str(len(files))
    assert sorted(json.loads(cursor)) == sorted(p.name for p in files)

    again, same_cursor = _evaluate(sensor, cursor)
    assert isinstance(again, SkipReason) and same_cursor == cursor

    with files[0].open("a") as out:  # the collector appends to a file it already wrote
        out.write('{"type": "track", "messageId": "late-1"}\n')
    grown, _ = _evaluate(sensor, cursor)
    assert isinstance(grown, RunRequest) and grown.tags["cdp/event_files"] == "1"
    assert grown.run_key != first.run_key


def test_scan_ignores_other_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text("{}\n")
    (tmp_path / "b.csv").write_text("x\n")
    (tmp_path / "sub.jsonl").mkdir()
    changed, cursor = scan_event_files(tmp_path, ["*.jsonl", "*.json"], None)
    assert changed == ["a.jsonl"] and list(cursor) == ["a.jsonl"]


def test_failed_run_posts_a_redacted_alert(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk_live_do_not_leak_0123"
    monkeypatch.setenv("STRIPE_API_KEY", secret)

    @asset
    def flaky_source() -> None:
        raise RuntimeError(f"vendor said 401 for key {secret}")

    with WebhookReceiver() as hook, DagsterInstance.ephemeral() as instance:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{hook.url}/services/T000/B000/XXXX")
        result = materialize([flaky_source], instance=instance, raise_on_error=False)
        assert not result.success
        sensor = failure_alert_sensor()
        context = build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_event=result.get_run_failure_event(),
            dagster_instance=instance,
            dagster_run=result.dagster_run,
        ).for_run_failure()
        sensor(context)
        assert len(hook.slack_messages) == 1
        text = hook.slack_messages[0]["text"]
    assert "flaky_source" in text and "401" in text
    assert secret not in text and "***" in text


def test_no_webhook_no_alert(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)

    @asset
    def broken() -> None:
        raise RuntimeError("boom")

    with WebhookReceiver() as hook, DagsterInstance.ephemeral() as instance:
        result = materialize([broken], instance=instance, raise_on_error=False)
        context = build_run_status_sensor_context(
            sensor_name="run_failure_alert",
            dagster_event=result.get_run_failure_event(),
            dagster_instance=instance,
            dagster_run=result.dagster_run,
        ).for_run_failure()
        failure_alert_sensor()(context)
        assert hook.slack_messages == []
