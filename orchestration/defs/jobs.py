"""Jobs: the selections schedules and sensors launch. Pure selection logic, unit-tested.

Every job is tagged as a warehouse writer; the project's ``dagster.yaml`` lets one run with that
tag in progress at a time, so a scheduled run and a manual one queue instead of colliding.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import AssetKey, AssetSelection, define_asset_job
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from orchestration.defs.syncs import KEY_PREFIX

WRITER_TAGS = {"cdp/warehouse": "writer"}
INGEST_AND_BUILD = "ingest_and_build"
EVENT_FILES = "ingest_events"


def sync_selection() -> AssetSelection:
    return AssetSelection.key_prefixes([KEY_PREFIX])


def ingest_and_build_job() -> UnresolvedAssetJobDefinition:
    """Sources -> dbt models and checks; syncs keep their own schedules."""
    return define_asset_job(
        INGEST_AND_BUILD,
        selection=AssetSelection.all() - sync_selection(),
        tags=WRITER_TAGS,
        description="Ingest every source, then dbt build (staging -> segments) with its checks.",
    )


def events_job(event_keys: Sequence[AssetKey]) -> UnresolvedAssetJobDefinition:
    """New event files: load them and rebuild what depends on events, without sending syncs."""
    return define_asset_job(
        EVENT_FILES,
        selection=AssetSelection.assets(*event_keys).downstream() - sync_selection(),
        tags=WRITER_TAGS,
        description="Load new event files and rebuild the models downstream of them.",
    )


def sync_job_name(sync_name: str) -> str:
    return f"sync_{sync_name}"


def sync_job(sync_name: str, key: AssetKey) -> UnresolvedAssetJobDefinition:
    return define_asset_job(
        sync_job_name(sync_name),
        selection=AssetSelection.assets(key),
        tags={**WRITER_TAGS, "cdp/sync": sync_name},
        description=f"Send the changes of sync {sync_name} to its destination.",
    )
