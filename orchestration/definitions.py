"""The Dagster definitions of composable-cdp: one asset graph from sources to syncs.

``dagster dev -m orchestration.definitions``, ``cdp ui`` and ``cdp run`` all load this module.
Steps run in process, one after the other: every step but the checks writes the single DuckDB
file, so parallel step processes would only wait on each other's lock (and pay the start-up).
"""

from __future__ import annotations

import logging

from dagster import Definitions, in_process_executor

from orchestration.defs.checks import identity_checks
from orchestration.defs.dbt import dbt_models, relations
from orchestration.defs.ingest import ingest_assets, stream_key
from orchestration.defs.jobs import events_job, ingest_and_build_job, sync_job
from orchestration.defs.resources import WarehouseResource, dbt_resource
from orchestration.defs.schedules import ingest_and_build_schedule, sync_schedule
from orchestration.defs.sensors import event_files_sensor, failure_alert_sensor
from orchestration.defs.serving import snapshot_asset
from orchestration.defs.syncs import declared_syncs, sync_asset, sync_key

log = logging.getLogger(__name__)


def _privacy() -> tuple[list, list]:
    """Deletion requests and retention (orchestration/privacy), when that package is present."""
    try:
        from orchestration.privacy.dagster_defs import privacy_jobs, privacy_schedules
    except ImportError as exc:
        log.warning("no privacy jobs: %s", exc)
        return [], []
    return privacy_jobs(), privacy_schedules()


def build_definitions() -> Definitions:
    streams = ingest_assets()
    syncs = declared_syncs()
    build_job = ingest_and_build_job()
    jobs = [build_job]
    schedules = [ingest_and_build_schedule(build_job)]
    for sync in syncs:
        job = sync_job(sync.name, sync_key(sync.name))
        jobs.append(job)
        schedules.append(sync_schedule(sync.name, sync.schedule, job))
    sensors = [failure_alert_sensor()]
    event_keys = [k for a in streams for k in a.keys if k.path[0] == "raw_events"]
    if event_keys:
        job = events_job(event_keys)
        jobs.append(job)
        sensors.append(event_files_sensor(job))
    privacy_jobs, privacy_schedules = _privacy()
    jobs += privacy_jobs
    schedules += privacy_schedules
    identifiers = {rel: key for key, rel in relations().items()}.get("marts.customer_identifiers")
    checks = identity_checks(identifiers) if identifiers else []
    return Definitions(
        assets=[
            *streams,
            dbt_models,
            *snapshot_asset(relations()),
            *(sync_asset(s) for s in syncs),
        ],
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources={"dbt": dbt_resource(), "warehouse": WarehouseResource()},
        executor=in_process_executor,
    )


defs = build_definitions()

__all__ = ["defs", "build_definitions", "stream_key"]
