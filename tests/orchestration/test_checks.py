"""Identity-health checks grade real tables by the configured thresholds, remember the last run's
merge rate, and, being blocking, keep a sync from running after a failed check."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import yaml
from dagster import AssetKey, DagsterInstance, MaterializeResult, asset, materialize

from orchestration.defs.checks import identity_checks
from orchestration.defs.resources import WarehouseResource

KEY = AssetKey(["marts", "customer_identifiers"])


def identifier_rows(customers: int, emails_each: dict[int, int] | None = None, giant: int = 0):
    """Each customer: one user_id, one hubspot id, emails (1 unless said); plus one customer
    holding ``giant`` extra user ids when asked (an over-merge)."""
    rows = []
    for c in range(customers):
        rows += [(f"c{c}", "user_id", f"u{c}"), (f"c{c}", "hubspot_contact_id", f"h{c}")]
        rows += [(f"c{c}", "email", f"p{c}.{e}@x.io") for e in range((emails_each or {}).get(c, 1))]
    rows += [("c0", "user_id", f"g{i}") for i in range(giant)]
    return rows


def split_rows(rows):
    """Every source record its own customer: what a broken match rule does."""
    return [(f"{c}-{v}" if t != "email" else c, t, v) for c, t, v in rows]


def run_checks(db_path: Path, rows, instance: DagsterInstance, downstream: bool = False):
    @asset(key=KEY)
    def customer_identifiers(warehouse: WarehouseResource) -> MaterializeResult:
        with warehouse.writing() as path:
            con = duckdb.connect(str(path))
            con.execute("create schema if not exists marts")
            con.execute(
                "create or replace table marts.customer_identifiers "
                "(customer_id varchar, id_type varchar, id_value varchar)"
            )
            con.executemany("insert into marts.customer_identifiers values (?, ?, ?)", rows)
            con.close()
        return MaterializeResult()

    @asset(deps=[KEY], key=AssetKey(["reverse_etl", "a_sync"]))
    def a_sync() -> None:
        return None

    assets = [customer_identifiers, *identity_checks(KEY), *([a_sync] if downstream else [])]
    result = materialize(
        assets,
        instance=instance,
        resources={"warehouse": WarehouseResource(path=str(db_path))},
        raise_on_error=False,
    )
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    materialized = {
        e.step_materialization_data.materialization.asset_key
        for e in result.get_asset_materialization_events()
    }
    return checks, materialized


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst


def test_healthy_identity_passes_with_its_figures(tmp_path: Path, instance) -> None:
    n = 40
    checks, _ = run_checks(tmp_path / "w.duckdb", identifier_rows(n), instance)
    assert all(c.passed for c in checks.values()), checks
    assert checks["largest_cluster"].metadata["largest_cluster"].value == 2
    assert checks["many_emails"].metadata["customers_many_emails"].value == 0
    # 2 source records per customer: half of them merged into another
    assert checks["merge_rate_change"].metadata["merge_rate"].value == pytest.approx(
        1 - n / (2 * n)
    )
    assert checks["merge_rate_change"].metadata["previous_merge_rate"].value == "none"


def test_over_merge_fails_and_blocks_the_sync(tmp_path: Path, instance) -> None:
    giant = 600  # past the shipped fail threshold (500)
    checks, materialized = run_checks(
        tmp_path / "w.duckdb", identifier_rows(20, giant=giant), instance, downstream=True
    )
    largest = checks["largest_cluster"]
    assert not largest.passed and largest.severity.value == "ERROR"
    assert largest.metadata["largest_cluster"].value == giant + 2
    assert largest.metadata["largest_cluster_customer"].value == "c0"
    assert KEY in materialized
    assert AssetKey(["reverse_etl", "a_sync"]) not in materialized


def test_thresholds_come_from_config(tmp_path: Path, instance, monkeypatch) -> None:
    override = tmp_path / "orch.yml"
    override.write_text(
        yaml.safe_dump(
            {"identity_checks": {"many_emails": {"max_emails": 2, "warn": 0.05, "fail": 0.5}}}
        )
    )
    monkeypatch.setenv("CDP_ORCHESTRATION_CONFIG", str(override))
    n, many = 50, 5  # 5 of 50 customers hold 3 emails: 10%, between warn and fail
    rows = identifier_rows(n, emails_each={c: 3 for c in range(many)})
    checks, materialized = run_checks(tmp_path / "w.duckdb", rows, instance, downstream=True)
    emails = checks["many_emails"]
    assert not emails.passed and emails.severity.value == "WARN"
    assert emails.metadata["share_many_emails"].value == pytest.approx(many / n)
    assert AssetKey(["reverse_etl", "a_sync"]) in materialized  # a warning does not block


def test_merge_rate_is_compared_with_the_previous_run(tmp_path: Path, instance) -> None:
    db = tmp_path / "w.duckdb"
    rows = identifier_rows(30)
    first, _ = run_checks(db, rows, instance)
    again, _ = run_checks(db, rows, instance)
    assert again["merge_rate_change"].passed
    assert again["merge_rate_change"].metadata["change"].value == 0
    broken, _ = run_checks(db, split_rows(rows), instance)
    check = broken["merge_rate_change"]
    before = first["merge_rate_change"].metadata["merge_rate"].value
    assert check.metadata["previous_merge_rate"].value == pytest.approx(before)
    assert check.metadata["change"].value == pytest.approx(before)  # every merge undone
    assert not check.passed and check.severity.value == "ERROR"
