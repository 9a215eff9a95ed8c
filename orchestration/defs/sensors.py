"""Sensors: new event files start a load, and a failed run posts an alert to Slack.

The event-file sensor remembers each file's size and modification time in its cursor, so a file
the collector is still appending to triggers again when it grows, and the run key (derived from
the new signatures) stops the same change from launching twice. The failure alert is a no-op
until ``SLACK_WEBHOOK_URL`` is set; its text is redacted like every other message that leaves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import requests
from dagster import (
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from orchestration.defs.config import section
from orchestration.defs.secrets import redact, step_failure_message

log = logging.getLogger(__name__)


def _status(value: str | None, default: str) -> DefaultSensorStatus:
    return DefaultSensorStatus((value or default).upper())


def scan_event_files(
    folder: Path, patterns: list[str], cursor: str | None
) -> tuple[list[str], dict[str, str]]:
    """Files new or changed since ``cursor``, and the cursor to store next."""
    seen = json.loads(cursor) if cursor else {}
    current = {}
    for path in sorted({p for pattern in patterns for p in folder.glob(pattern)}):
        if path.is_file():
            stat = path.stat()
            current[path.name] = f"{stat.st_size}:{stat.st_mtime_ns}"
    changed = [name for name, signature in current.items() if seen.get(name) != signature]
    return changed, current


def event_files_sensor(job: UnresolvedAssetJobDefinition) -> SensorDefinition:
    cfg = section("sensors", "event_files")
    patterns = list(cfg.get("patterns") or ["*.jsonl"])

    @sensor(
        name="new_event_files",
        job=job,
        minimum_interval_seconds=int(cfg.get("minimum_interval_seconds", 60)),
        default_status=_status(cfg.get("status"), "RUNNING"),
        description=f"Loads new or grown event files ({', '.join(patterns)}) in CDP_EVENTS_DIR.",
    )
    def new_event_files(context: SensorEvaluationContext):
        folder = os.environ.get("CDP_EVENTS_DIR")
        if not folder:
            return SkipReason("CDP_EVENTS_DIR is not set")
        if not Path(folder).is_dir():
            return SkipReason(f"CDP_EVENTS_DIR {folder} is not a folder")
        changed, cursor = scan_event_files(Path(folder), patterns, context.cursor)
        if not changed:
            return SkipReason("no new event files")
        context.update_cursor(json.dumps(cursor, sort_keys=True))
        signature = json.dumps({name: cursor[name] for name in changed}, sort_keys=True)
        return RunRequest(
            run_key=hashlib.sha256(signature.encode()).hexdigest()[:24],
            tags={"cdp/event_files": str(len(changed))},
        )

    return new_event_files


def alert_text(context: RunFailureSensorContext) -> str:
    run = context.dagster_run
    lines = [f"composable-cdp: run of `{run.job_name}` failed (run {run.run_id[:8]})"]
    failures = context.get_step_failure_events()
    for event in failures[:5]:
        lines.append(f"- step `{event.step_key}`: {step_failure_message(event)}"[:500])
    if not failures and context.failure_event.message:
        lines.append(context.failure_event.message[:500])
    return redact("\n".join(lines)) or ""


def post_alert(url: str, text: str) -> None:
    """Slack incoming-webhook shape: ``{"text": ...}``; any compatible receiver works."""
    response = requests.post(url, json={"text": text}, timeout=10)
    response.raise_for_status()


def failure_alert_sensor() -> SensorDefinition:
    cfg = section("sensors", "run_failure_alert")

    @run_failure_sensor(
        name="run_failure_alert",
        default_status=_status(cfg.get("status"), "RUNNING"),
        description="Posts failed runs to SLACK_WEBHOOK_URL (when set).",
    )
    def run_failure_alert(context: RunFailureSensorContext) -> None:
        url = os.environ.get("SLACK_WEBHOOK_URL")
        if not url:
            context.log.info("SLACK_WEBHOOK_URL is not set: no alert sent")
            return
        post_alert(url, alert_text(context))

    return run_failure_alert
