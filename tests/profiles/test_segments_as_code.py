"""Segments are code: a new SQL file shows up in segment_memberships with no Python change, and
the membership history records who entered and who left across two builds with changed data.

Runs on a temporary copy of the dbt project so the added segment never touches the repository.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import polars as pl
import pytest

from orchestration.demo.generator import TRUTH_COLUMN, DemoData
from orchestration.demo.warehouse import load_raw
from tests.conftest import AS_OF, REPO_ROOT, run_dbt
from tests.profiles import truth

FIRST = AS_OF.replace(tzinfo=None)
SECOND = FIRST + dt.timedelta(days=1)
NEW_SEGMENT = "frequent_buyers"
NEW_SEGMENT_SQL = """\
{{ config(tags=['segment'], meta={'owner': 'tests', 'description': 'Three or more purchases.'}) }}

select customer_id, email, first_name, last_name, phone, order_count
from {{ ref('customers') }}
where order_count >= 3
"""


def _build(db_path, project_dir, as_of: dt.datetime) -> None:
    """Models and seeds only: the data tests already run in test_profiles' build."""
    run_dbt(
        db_path,
        "build",
        "--exclude-resource-type",
        "test",
        "--exclude-resource-type",
        "unit_test",
        "--vars",
        json.dumps({"cdp_as_of": as_of.strftime("%Y-%m-%d %H:%M:%S")}),
        project_dir=project_dir,
    )


def _changed(data: DemoData) -> DemoData:
    """The next day's data: some people's charges vanish (refund sweep), others buy big."""
    tables = dict(data.tables)
    charges = tables["stripe.charges"]
    tables["stripe.charges"] = charges.filter(pl.col(TRUTH_COLUMN) % 2 == 1)
    orders = tables["app.orders"]
    buyers = tables["app.users"].filter(pl.col(TRUTH_COLUMN) % 7 == 0)
    big = pl.DataFrame(
        {
            "id": pl.int_range(
                orders["id"].max() + 1, orders["id"].max() + 1 + buyers.height, eager=True
            ),
            "user_id": buyers["id"],
            "amount": [1000.0] * buyers.height,
            "currency": ["usd"] * buyers.height,
            "status": ["completed"] * buyers.height,
            "created_at": [AS_OF + dt.timedelta(hours=12)] * buyers.height,
            "updated_at": [AS_OF + dt.timedelta(hours=12)] * buyers.height,
            TRUTH_COLUMN: buyers[TRUTH_COLUMN],
        }
    )
    tables["app.orders"] = pl.concat([orders, big.cast(orders.schema)])
    return DemoData(seed=data.seed, as_of=data.as_of, people=data.people, tables=tables)


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory, small_demo):
    """Build, add a segment file, change the data, build again a day later."""
    root = tmp_path_factory.mktemp("segments_as_code")
    project = root / "dbt_project"
    shutil.copytree(
        REPO_ROOT / "dbt_project",
        project,
        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", ".user.yml"),
    )
    db_path = root / "cdp.duckdb"
    load_raw(db_path, small_demo)
    _build(db_path, project, FIRST)
    first = truth.query(db_path, "select * from marts.segment_memberships")

    (project / "models" / "segments" / f"{NEW_SEGMENT}.sql").write_text(NEW_SEGMENT_SQL)
    changed = _changed(small_demo)
    load_raw(db_path, changed)
    _build(db_path, project, SECOND)
    return db_path, first, changed


def test_new_segment_file_appears_in_memberships(two_builds) -> None:
    db_path, first, changed = two_builds
    assert NEW_SEGMENT not in set(first["segment"])
    current = truth.query(db_path, "select * from marts.segment_memberships")
    members = current.filter(pl.col("segment") == NEW_SEGMENT)
    rc = truth.record_customers(db_path)
    expected = truth.order_traits(changed, rc).filter(pl.col("order_count") >= 3)
    assert members.height > 0
    assert set(members["customer_id"]) == set(expected["customer_id"])
    assert set(members["entered_at"]) == {SECOND}
    # and it is a model of its own with the sync columns
    table = truth.query(db_path, f"select * from segments.{NEW_SEGMENT}")
    assert set(table["customer_id"]) == set(members["customer_id"])


def test_history_records_entries_and_exits(two_builds) -> None:
    db_path, first, changed = two_builds
    history = truth.query(db_path, "select * from marts.segment_membership_history")
    current = truth.query(db_path, "select * from marts.segment_memberships")
    rc = truth.record_customers(db_path)
    after = set(
        truth.order_traits(changed, rc).filter(pl.col("lifetime_value") >= 200)["customer_id"]
    )
    before = set(first.filter(pl.col("segment") == "high_value_customers")["customer_id"])
    left, joined, stayed = before - after, after - before, before & after
    assert left and joined and stayed

    hv = history.filter(pl.col("segment") == "high_value_customers")
    exits = hv.filter(pl.col("exited_at").is_not_null())
    assert set(exits["customer_id"]) == left
    assert set(exits["exited_at"]) == {SECOND}
    assert set(exits["entered_at"]) == {FIRST}
    open_spells = hv.filter(pl.col("exited_at").is_null())
    assert set(open_spells["customer_id"]) == after
    entered = dict(open_spells.select("customer_id", "entered_at").iter_rows())
    assert all(entered[c] == FIRST for c in stayed)
    assert all(entered[c] == SECOND for c in joined)

    cur = current.filter(pl.col("segment") == "high_value_customers")
    assert set(cur["customer_id"]) == after


def test_segment_size_on_a_past_day_is_a_query(two_builds) -> None:
    db_path, first, _ = two_builds
    sizes = truth.query(
        db_path,
        f"""
        select segment, count(*) as n
        from marts.segment_membership_history
        where entered_at <= timestamp '{FIRST}'
            and (exited_at is null or exited_at > timestamp '{FIRST}')
        group by segment
        """,
    )
    assert dict(sizes.iter_rows()) == dict(first.group_by("segment").len().iter_rows())


def test_rerun_with_full_refresh_keeps_history(two_builds) -> None:
    """Same data, same moment, even --full-refresh: the history neither loses nor gains a row."""
    db_path, _, _ = two_builds
    history = truth.query(db_path, "select * from marts.segment_membership_history")
    run_dbt(
        db_path,
        "run",
        "--select",
        "int_segments__members+",
        "--full-refresh",
        "--vars",
        json.dumps({"cdp_as_of": SECOND.strftime("%Y-%m-%d %H:%M:%S")}),
        project_dir=db_path.parent / "dbt_project",
    )
    again = truth.query(db_path, "select * from marts.segment_membership_history")
    assert again.height == history.height
    assert again.sort(again.columns).equals(history.sort(history.columns))
