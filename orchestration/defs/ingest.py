"""One asset per connector stream, keyed ``raw_<source>/<stream>`` like the dbt source it feeds.

Each stream is its own asset so the UI shows which stream failed and how many rows each one
read, loaded and quarantined, and so one stream can be re-run alone. Every load holds the
warehouse's writer lock and runs in the writer pool.
"""

import logging

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    asset,
)

from orchestration.defs.config import writer_pool
from orchestration.defs.resources import WarehouseResource, read_only_connection
from orchestration.defs.secrets import settle

log = logging.getLogger(__name__)

GROUP = "ingest"


def stream_key(source: str, stream: str) -> AssetKey:
    return AssetKey([f"raw_{source}", stream])


def _raw_row_count(warehouse: WarehouseResource, source: str, stream: str) -> int | None:
    import duckdb

    try:
        con = read_only_connection(warehouse.db_path())
    except duckdb.Error:
        return None
    try:
        return con.execute(f'select count(*) from "raw_{source}"."{stream}"').fetchone()[0]
    except duckdb.Error:
        return None
    finally:
        con.close()


def _ensure_raw_table(db_path, source: str, stream: str) -> None:
    """A source without credentials is skipped, but its (empty) raw table must exist so the
    staging views over it, and everything downstream, still build."""
    from connectors.loader import Warehouse
    from connectors.registry import SOURCES

    with Warehouse(db_path) as wh:
        wh.ensure_table(source, SOURCES[source].stream_specs()[stream])


def stream_asset(source: str, stream: str) -> AssetsDefinition:
    @asset(
        key=stream_key(source, stream),
        group_name=GROUP,
        pool=writer_pool(),
        kinds={"python", "duckdb"},
        description=f"`{source}` connector, stream `{stream}`: upserted into raw_{source}.{stream}",
        tags={"cdp/source": source},
    )
    def _ingest(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        from connectors.ingest import ingest_stream

        with warehouse.writing() as db_path:
            result = ingest_stream(source, stream, db_path=db_path)
            if result.status == "skipped":
                _ensure_raw_table(db_path, source, stream)
            total = _raw_row_count(warehouse, source, stream)
        metadata = {
            "status": result.status,
            "rows_read": result.rows_read,
            "rows_loaded": result.rows_loaded,
            "rows_quarantined": result.rows_quarantined,
            "rows_suppressed": getattr(result, "rows_suppressed", 0),
            "pages": result.pages,
            "retries": result.retries,
            "duration_s": round(result.duration_s, 3),
        }
        if total is not None:
            metadata["dagster/row_count"] = total
        settle(context, f"{source}.{stream}", result.status, result.message, metadata)
        return MaterializeResult(metadata=metadata)

    return _ingest


def ingest_assets() -> list[AssetsDefinition]:
    """An asset per registered stream; none (with a warning) if the connectors cannot load."""
    try:
        from connectors.registry import streams
    except ImportError as exc:
        log.warning("no ingest assets: connectors cannot be imported (%s)", exc)
        return []
    return [stream_asset(source, stream) for source, stream in streams()]
