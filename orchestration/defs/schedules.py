"""Schedules from ``orchestration.yml`` and the sync declarations.

The ingest-and-build schedule is on by default (a CDP is only useful fresh, and it touches
nothing outside the warehouse). Sync schedules are off by default: a sync writes into a CRM or an
email tool, so an operator turns each on deliberately in the UI or the config.
"""

from __future__ import annotations

from dagster import DefaultScheduleStatus, ScheduleDefinition
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from orchestration.defs.config import section


def _status(value: str | None, default: str) -> DefaultScheduleStatus:
    return DefaultScheduleStatus((value or default).upper())


def ingest_and_build_schedule(job: UnresolvedAssetJobDefinition) -> ScheduleDefinition:
    cfg = section("schedules", "ingest_and_build")
    return ScheduleDefinition(
        name="ingest_and_build_schedule",
        job=job,
        cron_schedule=cfg.get("cron", "0 * * * *"),
        execution_timezone=cfg.get("timezone", "UTC"),
        default_status=_status(cfg.get("status"), "RUNNING"),
        description="Ingest every source and rebuild the models (hourly unless configured).",
    )


def sync_schedule(
    sync_name: str, cron: str | None, job: UnresolvedAssetJobDefinition
) -> ScheduleDefinition:
    """The schedule the sync's declaration names, else the configured default."""
    cfg = section("schedules", "syncs")
    return ScheduleDefinition(
        name=f"{job.name}_schedule",
        job=job,
        cron_schedule=cron or cfg.get("default_cron", "30 * * * *"),
        execution_timezone=cfg.get("timezone", "UTC"),
        default_status=_status(cfg.get("status"), "STOPPED"),
        description=f"Run sync {sync_name} on the schedule its declaration names.",
    )
