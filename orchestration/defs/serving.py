"""The profile snapshot the collector and the profile API read, refreshed after each build.

Serving processes must never open the warehouse (one writer; a reader would block the pipeline),
so the pipeline exports the serving marts to a versioned Parquet snapshot once they are built.
The export only reads: it shares the warehouse lock with other readers.
"""

import logging

from dagster import AssetKey, AssetsDefinition, MaterializeResult, asset

from orchestration.defs.resources import WarehouseResource

log = logging.getLogger(__name__)

KEY = AssetKey(["serving", "profile_snapshot"])


def snapshot_asset(relations: dict[AssetKey, str]) -> list[AssetsDefinition]:
    """The snapshot asset, downstream of the marts it exports (none if serving is absent)."""
    try:
        from orchestration.serve import snapshot
        from orchestration.serve.config import snapshot_dir
    except ImportError as exc:
        log.warning("no profile snapshot asset: orchestration.serve cannot be imported (%s)", exc)
        return []
    by_relation = {rel: key for key, rel in relations.items()}
    deps = [by_relation[f"marts.{t}"] for t in snapshot.TABLES if f"marts.{t}" in by_relation]

    @asset(
        key=KEY,
        deps=deps,
        group_name="profiles",
        kinds={"python", "parquet"},
        description="Read-only Parquet snapshot of the serving marts for the collector and API.",
    )
    def profile_snapshot(warehouse: WarehouseResource) -> MaterializeResult:
        with warehouse.reading() as con:
            version = snapshot.refresh(warehouse.db_path(), snapshot_dir(), con=con)
        rows = snapshot.manifest(version)["rows"]
        return MaterializeResult(
            metadata={
                "version": version.name,
                "path": str(version),
                **{f"rows_{t}": n for t, n in rows.items()},
            }
        )

    return [profile_snapshot]
