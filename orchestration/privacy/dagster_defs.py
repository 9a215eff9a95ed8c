"""Dagster wiring for the privacy jobs: deletion requests and retention, each on a schedule.

Both write to the warehouse, so the jobs carry the writer tag the other jobs carry and queue
behind them. The lead adds ``privacy_jobs()`` and ``privacy_schedules()`` to the Definitions.
"""

# no ``from __future__ import annotations``: Dagster reads the Config annotation at runtime
from dagster import (
    Config,
    DefaultScheduleStatus,
    JobDefinition,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)

from orchestration import settings
from orchestration.defs.config import writer_pool
from orchestration.defs.resources import file_lock, lock_path
from orchestration.privacy.deletion_requests import process_deletion_requests
from orchestration.privacy.retention import apply_retention

WRITER_TAGS = {"cdp/warehouse": "writer"}


class DeletionRequestsConfig(Config):
    files: list[str] = []  # request files to import first (one identifier or JSON per line)
    destinations: bool = True


def _writer_lock():
    """The warehouse's writer lock, as the ingest, dbt and sync steps hold it."""
    return file_lock(lock_path(settings.duckdb_path()), exclusive=True)


@op(
    description="Forget every pending person of ops.deletion_requests (and request files).",
    pool=writer_pool(),
)
def process_deletion_requests_op(context: OpExecutionContext, config: DeletionRequestsConfig):
    with _writer_lock():
        receipts = process_deletion_requests(files=config.files, destinations=config.destinations)
    failed = [r.request_id for r in receipts if not r.ok]
    context.add_output_metadata(
        {"requests": len(receipts), "incomplete": len(failed), "request_ids": ", ".join(failed)}
    )
    if failed:
        raise RuntimeError(f"{len(failed)} deletion request(s) incomplete: {', '.join(failed)}")
    return len(receipts)


@op(
    description="Delete raw rows older than their source's retention period (retention.yml).",
    pool=writer_pool(),
)
def apply_retention_op(context: OpExecutionContext):
    with _writer_lock():
        results = apply_retention()
    context.add_output_metadata(
        {r.table: r.rows_deleted for r in results} | {"tables": len(results)}
    )
    return sum(r.rows_deleted for r in results)


@job(tags=WRITER_TAGS, description="Process deletion requests: forget, rebuild, verify, audit.")
def deletion_requests_job() -> None:
    process_deletion_requests_op()


@job(tags=WRITER_TAGS, description="Apply retention periods to raw and operational tables.")
def retention_job() -> None:
    apply_retention_op()


def privacy_jobs() -> list[JobDefinition]:
    return [deletion_requests_job, retention_job]


def privacy_schedules() -> list[ScheduleDefinition]:
    """Deletion requests hourly (GDPR gives a month; an hour is kind), retention nightly."""
    return [
        ScheduleDefinition(
            name="deletion_requests_schedule",
            job=deletion_requests_job,
            cron_schedule="15 * * * *",
            execution_timezone="UTC",
            default_status=DefaultScheduleStatus.RUNNING,
        ),
        ScheduleDefinition(
            name="retention_schedule",
            job=retention_job,
            cron_schedule="30 3 * * *",
            execution_timezone="UTC",
            default_status=DefaultScheduleStatus.RUNNING,
        ),
    ]
