"""The whole asset graph, materialized in process through Dagster, from the vendor fakes and the
file sources to the destinations: success, metadata that matches the warehouse, every check run,
and a second run that sends nothing new and compares the merge rate with the first."""

from __future__ import annotations

import pytest

from connectors.loader import connect
from orchestration.defs.dbt import TRANSLATOR, manifest, relations
from orchestration.defs.syncs import declared_syncs, sync_key
from orchestration.demo.run import demo_stack
from orchestration.runner import run_all
from orchestration.ui import prepare_home

IDENTITY_CHECKS = {"largest_cluster", "many_emails", "merge_rate_change"}


@pytest.fixture(scope="module")
def graph_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("graph")
    mp = pytest.MonkeyPatch()
    mp.setenv("CDP_DUCKDB_PATH", str(tmp / "cdp.duckdb"))
    mp.setenv("DAGSTER_HOME", str(prepare_home(tmp / "dagster_home")))
    try:
        with demo_stack(people=300, seed=11, workdir=tmp / "demo") as stack:
            first = run_all()
            assert first.success, first.failure
            keys = [k.to_user_string() for k in [sync_key(s.name) for s in declared_syncs()]]
            second = run_all(["marts/customer_identifiers", *keys])
            yield stack, tmp / "cdp.duckdb", first, second
    finally:
        mp.undo()


def _con(db):
    return connect(db, read_only=True)


def test_every_asset_of_the_graph_materialized(graph_run) -> None:
    _, _, first, _ = graph_run
    assert first.selected and first.not_materialized == []
    groups = {k.split("/")[0] for k in first.assets}
    assert {"raw_app", "raw_events", "staging", "marts", "segments", "activation"} <= groups


def test_ingest_metadata_counts_each_source_record_once(graph_run) -> None:
    stack, db, first, _ = graph_run
    con = _con(db)
    for name, frame in stack.data.tables.items():
        source, stream = name.split(".")
        meta = first.assets[f"raw_{source}/{stream}"]
        key = "message_id" if source == "events" else "id"
        assert meta["status"] == "ok"
        assert meta["rows_loaded"] + meta["rows_quarantined"] == frame[key].n_unique(), name
        table_rows = con.execute(f"select count(*) from raw_{source}.{stream}").fetchone()[0]
        assert meta["dagster/row_count"] == table_rows
    con.close()


def test_dbt_materializations_carry_row_counts_and_column_schemas(graph_run) -> None:
    _, db, first, _ = graph_run
    con = _con(db)
    checked = 0
    for key, relation in relations().items():
        meta = first.assets.get(key.to_user_string())
        if meta is None:
            continue
        schema, table = relation.split(".")
        columns = con.execute(
            "select column_name, lower(data_type) from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            [schema, table],
        ).fetchall()
        assert meta["dagster/column_schema"] == dict(columns), relation
        rows = con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0]
        assert meta["dagster/row_count"] == rows, relation
        checked += 1
    con.close()
    assert checked == len(relations())


def test_dbt_tests_and_identity_checks_ran_and_passed(graph_run) -> None:
    _, _, first, _ = graph_run
    ran = {(c.asset, c.name) for c in first.checks}
    for test in manifest()["nodes"].values():
        attached = test.get("attached_node") or ""
        if test["resource_type"] == "test" and attached.startswith("model."):
            model_key = TRANSLATOR.get_asset_key(manifest()["nodes"][attached]).to_user_string()
            assert (model_key, test["name"]) in ran, test["name"]
    identity = {c.name for c in first.checks if c.asset == "marts/customer_identifiers"}
    assert IDENTITY_CHECKS <= identity
    failed = [(c.asset, c.name, c.metadata) for c in first.checks if not c.passed]
    assert failed == []


def test_sync_metadata_matches_what_the_engine_recorded(graph_run) -> None:
    _, db, first, _ = graph_run
    con = _con(db)
    syncs = declared_syncs()
    assert syncs
    for sync in syncs:
        meta = first.assets[sync_key(sync.name).to_user_string()]
        recorded = con.execute(
            "select status, rows_added, rows_changed, rows_removed, rows_failed, rows_skipped "
            "from ops.sync_runs where run_id = ?",
            [meta["sync_run_id"]],
        ).fetchone()
        assert recorded == (
            meta["status"],
            meta["rows_added"],
            meta["rows_changed"],
            meta["rows_removed"],
            meta["rows_failed"],
            meta["rows_skipped"],
        )
        # a first sync accounts for every row of its model: sent, skipped (consent) or failed
        model_rows = con.execute(f"select count(*) from {sync.model}").fetchone()[0]
        sent = meta["rows_added"] + meta["rows_skipped"] + meta["rows_failed"]
        assert sent == model_rows, sync.name
    con.close()


def test_second_run_sends_nothing_and_compares_the_merge_rate(graph_run) -> None:
    _, _, first, second = graph_run
    assert second.success, second.failure
    for sync in declared_syncs():
        meta = second.assets[sync_key(sync.name).to_user_string()]
        assert (meta["rows_added"], meta["rows_changed"], meta["rows_removed"]) == (0, 0, 0)

    def merge(summary):
        return next(c for c in summary.checks if c.name == "merge_rate_change")

    assert merge(second).metadata["previous_merge_rate"] == pytest.approx(
        merge(first).metadata["merge_rate"]
    )
    assert merge(second).metadata["change"] == 0 and merge(second).passed


def test_profile_snapshot_exported_after_the_build(graph_run) -> None:
    from orchestration.serve import snapshot
    from orchestration.serve.config import snapshot_dir

    _, db, first, _ = graph_run
    meta = first.assets["serving/profile_snapshot"]
    current = snapshot.current_version(snapshot_dir())
    assert current is not None and current.name == meta["version"]
    con = _con(db)
    for table in snapshot.TABLES:
        if table == "customer_events":
            continue  # capped per customer in the snapshot
        marts_rows = con.execute(f"select count(*) from marts.{table}").fetchone()[0]
        assert meta[f"rows_{table}"] == marts_rows, table
    con.close()


def test_people_resolve_to_customers_as_the_truth_says(graph_run) -> None:
    """Each product user is one customer, and no customer holds two different true people."""
    import polars as pl

    from orchestration.demo.generator import TRUTH_COLUMN

    stack, db, _, _ = graph_run
    con = _con(db)
    got = pl.from_arrow(
        con.sql(
            "select id_value as user_id, customer_id from marts.customer_identifiers "
            "where id_type = 'user_id'"
        ).to_arrow_table()
    )
    con.close()
    users = stack.data.tables["app.users"].select(
        pl.col("id").cast(pl.Utf8).alias("user_id"), TRUTH_COLUMN
    )
    joined = users.join(got, on="user_id", how="left")
    assert joined["customer_id"].null_count() == 0
    per_customer = joined.group_by("customer_id").agg(pl.col(TRUTH_COLUMN).n_unique().alias("n"))
    assert per_customer["n"].max() == 1
    assert joined["customer_id"].n_unique() == joined[TRUTH_COLUMN].n_unique()


def test_demo_summary_shows_segments_and_syncs(graph_run) -> None:
    from orchestration.demo.run import summarize

    _, db, _, _ = graph_run
    summary = summarize(db)
    assert summary["customers"] > 0 and summary["quarantined"] == 0
    assert summary["segments"] and all(count > 0 for _, count in summary["segments"])
    assert {name for name, *_ in summary["syncs"]} == {s.name for s in declared_syncs()}
    assert all(status == "success" for _, status, *_ in summary["syncs"])
