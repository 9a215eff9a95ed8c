"""One asset per reverse-ETL sync, downstream of the dbt ``sync_*`` model it sends.

The asset's materialization records what the sync did (rows added, changed, removed, failed,
skipped, API calls); a sync whose destination rejected rows still materializes, since the rows
that went through are real, and its ``no_failed_rows`` check warns. A sync that could not run
(destination down, bad credentials) fails the step and so triggers the failure alert.
"""

import logging

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    asset,
)

from orchestration.defs.config import writer_pool
from orchestration.defs.resources import WarehouseResource
from orchestration.defs.secrets import settle

log = logging.getLogger(__name__)

GROUP = "activation"
KEY_PREFIX = "reverse_etl"


def sync_key(name: str) -> AssetKey:
    return AssetKey([KEY_PREFIX, name])


def model_key(relation: str) -> AssetKey:
    """The dbt asset that builds ``schema.table`` (dagster-dbt keys models ``[schema, name]``)."""
    from orchestration.defs.dbt import relations

    by_relation = {rel: key for key, rel in relations().items()}
    return by_relation.get(relation, AssetKey(relation.split(".")))


def sync_asset(sync) -> AssetsDefinition:
    key = sync_key(sync.name)
    description = sync.description or f"sync {sync.name}: {sync.model} -> {sync.destination}"

    @asset(
        key=key,
        deps=[model_key(sync.model)],
        group_name=GROUP,
        pool=writer_pool(),
        kinds={"python", sync.destination},
        description=f"{description} (mode {sync.mode})",
        tags={"cdp/destination": sync.destination},
        metadata={
            "destination": sync.destination,
            "mode": sync.mode,
            "model": sync.model,
            "schedule": sync.schedule or "",
            "purpose": sync.purpose or "",
        },
        check_specs=[AssetCheckSpec("no_failed_rows", asset=key)],
        owners=[sync.owner] if sync.owner and "@" in sync.owner else None,
    )
    def _sync(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        from reverse_etl.engine import run_sync

        with warehouse.writing() as db_path:
            result = run_sync(sync.name, db_path=db_path)
        metadata = {
            "status": result.status,
            "rows_added": result.added,
            "rows_changed": result.changed,
            "rows_removed": result.removed,
            "rows_failed": result.failed,
            "rows_skipped": result.skipped,
            "api_calls": result.api_calls,
            "duration_s": round(result.duration_s, 3),
            "sync_run_id": result.run_id or "",
        }
        settle(context, f"sync {sync.name}", result.status, result.message, metadata)
        check = AssetCheckResult(
            check_name="no_failed_rows",
            passed=result.failed == 0,
            severity=AssetCheckSeverity.WARN,
            metadata={"rows_failed": result.failed, "see": "ops.sync_row_results"},
        )
        return MaterializeResult(metadata=metadata, check_results=[check])

    return _sync


def declared_syncs() -> list:
    """Every declared sync; a broken declaration fails loudly at load time."""
    try:
        from reverse_etl.config import load_syncs
    except ImportError as exc:
        log.warning("no sync assets: reverse_etl cannot be imported (%s)", exc)
        return []
    return load_syncs()
