"""Identity-health checks: the failure modes of identity resolution, caught after every build.

Over-merging (one "customer" swallowing hundreds of records through a shared email or a test
device) shows as a huge largest cluster and as customers holding many emails; a broken match rule
shows as a merge rate that moves sharply between runs. Thresholds come from
``orchestration.yml``; past ``warn`` a check warns, past ``fail`` it fails and, being blocking,
stops the syncs of that run, so a bad merge never reaches a CRM.
"""

import logging
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    asset_check,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from orchestration.defs.config import section
from orchestration.defs.resources import WarehouseResource

log = logging.getLogger(__name__)

IDENTIFIERS = "marts.customer_identifiers"
CONTACT_POINTS = ("email", "phone")  # shared contact points, unlike a record's own id


def grade(value: float, warn: float, fail: float, metadata: dict[str, Any]) -> AssetCheckResult:
    """Passed under ``warn``; a WARN past it; an ERROR past ``fail``."""
    metadata = {**metadata, "warn_above": warn, "fail_above": fail}
    if value > fail:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR, metadata=metadata)
    if value > warn:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN, metadata=metadata)
    return AssetCheckResult(passed=True, metadata=metadata)


def identity_figures(con, max_emails: int) -> dict[str, Any]:
    """The figures the checks grade, from the identifiers table (read-only)."""
    points = ", ".join(f"'{p}'" for p in CONTACT_POINTS)
    customers, records = con.execute(
        f"select count(distinct customer_id), count(*) filter (where id_type not in ({points})) "
        f"from {IDENTIFIERS}"
    ).fetchone()
    largest = con.execute(
        f"select customer_id, count(*) as n from {IDENTIFIERS} "
        f"where id_type not in ({points}) group by 1 order by n desc, customer_id limit 1"
    ).fetchone()
    many = con.execute(
        f"select count(*) from (select customer_id from {IDENTIFIERS} where id_type = 'email' "
        f"group by 1 having count(distinct id_value) > ?)",
        [max_emails],
    ).fetchone()[0]
    return {
        "customers": int(customers),
        "source_records": int(records),
        "largest_cluster": int(largest[1]) if largest else 0,
        "largest_cluster_customer": str(largest[0]) if largest else "",
        "customers_many_emails": int(many),
        "share_many_emails": many / customers if customers else 0.0,
        "merge_rate": max(0.0, 1 - customers / records) if records else 0.0,
    }


def previous_value(
    context: AssetCheckExecutionContext, check_name: str, asset_key: AssetKey, field: str
) -> float | None:
    """``field`` from this check's last evaluation in an earlier run (None on the first run)."""
    from dagster import AssetCheckKey

    storage = context.instance.event_log_storage
    history = storage.get_asset_check_execution_history(
        AssetCheckKey(asset_key, check_name),
        limit=10,
        status={AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED},
    )
    for record in history:
        if record.run_id == context.run.run_id or record.event is None:
            continue
        evaluation = record.event.dagster_event.event_specific_data
        value = evaluation.metadata.get(field) if evaluation else None
        if value is not None:
            return float(value.value)
    return None


def identity_checks(asset_key: AssetKey) -> list[AssetChecksDefinition]:
    cfg = section("identity_checks")
    cluster, emails, merge = (
        cfg.get("largest_cluster", {}),
        cfg.get("many_emails", {}),
        cfg.get("merge_rate_change", {}),
    )
    max_emails = int(emails.get("max_emails", 3))

    @asset_check(
        asset=asset_key,
        name="largest_cluster",
        blocking=True,
        description="Source records in the largest customer; a giant cluster means over-merging.",
    )
    def largest_cluster(warehouse: WarehouseResource) -> AssetCheckResult:
        with warehouse.reading() as con:
            figures = identity_figures(con, max_emails)
        return grade(
            figures["largest_cluster"],
            float(cluster.get("warn", 50)),
            float(cluster.get("fail", 500)),
            {k: figures[k] for k in ("largest_cluster", "largest_cluster_customer", "customers")},
        )

    @asset_check(
        asset=asset_key,
        name="many_emails",
        blocking=True,
        description=f"Share of customers holding more than {max_emails} emails.",
    )
    def many_emails(warehouse: WarehouseResource) -> AssetCheckResult:
        with warehouse.reading() as con:
            figures = identity_figures(con, max_emails)
        return grade(
            figures["share_many_emails"],
            float(emails.get("warn", 0.01)),
            float(emails.get("fail", 0.05)),
            {
                "share_many_emails": MetadataValue.float(figures["share_many_emails"]),
                "customers_many_emails": figures["customers_many_emails"],
                "max_emails": max_emails,
            },
        )

    @asset_check(
        asset=asset_key,
        name="merge_rate_change",
        blocking=True,
        description="Merge rate (1 - customers / source records) versus the previous run.",
    )
    def merge_rate_change(
        context: AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> AssetCheckResult:
        with warehouse.reading() as con:
            figures = identity_figures(con, max_emails)
        rate = figures["merge_rate"]
        before = previous_value(context, "merge_rate_change", asset_key, "merge_rate")
        change = abs(rate - before) if before is not None else 0.0
        metadata = {
            "merge_rate": MetadataValue.float(rate),
            "previous_merge_rate": MetadataValue.float(before) if before is not None else "none",
            "change": MetadataValue.float(change),
            "customers": figures["customers"],
            "source_records": figures["source_records"],
        }
        return grade(
            change, float(merge.get("warn", 0.05)), float(merge.get("fail", 0.2)), metadata
        )

    return [largest_cluster, many_emails, merge_rate_change]
