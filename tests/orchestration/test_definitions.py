"""The definitions load and form one graph: streams -> dbt models -> syncs, with checks,
schedules and sensors as configured. Expectations come from the registry, the dbt manifest and
the sync declarations, so the test follows the project as it grows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DefaultScheduleStatus, DefaultSensorStatus

from connectors.registry import streams
from orchestration.definitions import defs
from orchestration.defs.config import load_config
from orchestration.defs.dbt import LAYER_GROUPS, TRANSLATOR, manifest
from orchestration.defs.jobs import WRITER_TAGS, sync_job_name
from orchestration.defs.syncs import declared_syncs, sync_key
from orchestration.runner import DBT_SELECTION, resolve_selection
from tests.conftest import REPO_ROOT

GRAPH = defs.resolve_asset_graph()


def _model_nodes() -> list[dict]:
    return [n for n in manifest()["nodes"].values() if n["resource_type"] == "model"]


def test_dagster_definitions_validate_passes() -> None:
    dagster = str(Path(sys.executable).parent / "dagster")
    proc = subprocess.run(
        [dagster, "definitions", "validate", "-m", "orchestration.definitions", "-d", REPO_ROOT],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_every_stream_is_an_ingest_asset_feeding_its_dbt_source() -> None:
    sources = {
        (n["source_name"], n["name"]): TRANSLATOR.get_asset_key(n)
        for n in manifest()["sources"].values()
    }
    for source, stream in streams():
        key = AssetKey([f"raw_{source}", stream])
        node = GRAPH.get(key)
        assert node.is_materializable and node.group_name == "ingest", key
        if (f"raw_{source}", stream) in sources:
            # the dbt source's key is the ingest asset's key: staging reads from the stream
            assert sources[(f"raw_{source}", stream)] == key
            assert GRAPH.get(key).child_keys, f"{key} feeds no dbt model"


def test_every_dbt_model_is_an_asset_in_its_layer_group() -> None:
    models = _model_nodes()
    assert models
    for node in models:
        key = TRANSLATOR.get_asset_key(node)
        folder = Path(node["original_file_path"]).parts[1]
        expected = "segments" if "segment" in node["tags"] else LAYER_GROUPS[folder]
        assert GRAPH.get(key).group_name == expected, key
        for parent_id in node["depends_on"]["nodes"]:
            parent = manifest()["nodes"].get(parent_id) or manifest()["sources"][parent_id]
            assert TRANSLATOR.get_asset_key(parent) in GRAPH.get(key).parent_keys


def test_dbt_tests_are_asset_checks() -> None:
    tests = [
        n
        for n in manifest()["nodes"].values()
        if n["resource_type"] == "test" and (n.get("attached_node") or "").startswith("model.")
    ]
    assert tests
    check_names = {(k.asset_key, k.name) for k in GRAPH.asset_check_keys}
    for test in tests:
        model = manifest()["nodes"][test["attached_node"]]
        assert (TRANSLATOR.get_asset_key(model), test["name"]) in check_names, test["name"]


def test_each_sync_is_an_asset_downstream_of_its_model_with_its_schedule() -> None:
    syncs = declared_syncs()
    sync_cfg = load_config()["schedules"]["syncs"]
    for sync in syncs:
        node = GRAPH.get(sync_key(sync.name))
        assert node.group_name == "activation"
        parents = {k.to_user_string() for k in node.parent_keys}
        assert sync.model.replace(".", "/") in parents
        schedule = defs.resolve_schedule_def(f"{sync_job_name(sync.name)}_schedule")
        assert schedule.cron_schedule == (sync.schedule or sync_cfg["default_cron"])
        assert schedule.default_status == DefaultScheduleStatus.STOPPED


def test_schedule_and_sensor_defaults_follow_the_config() -> None:
    cfg = load_config()
    schedule = defs.resolve_schedule_def("ingest_and_build_schedule")
    assert schedule.cron_schedule == cfg["schedules"]["ingest_and_build"]["cron"]
    assert schedule.default_status == DefaultScheduleStatus.RUNNING
    job = defs.resolve_job_def("ingest_and_build")
    selected = job.asset_layer.selected_asset_keys
    assert {AssetKey([f"raw_{s}", t]) for s, t in streams()} <= selected
    assert not any(k.path[0] == "reverse_etl" for k in selected), "syncs run on their own schedules"
    for name in ("new_event_files", "run_failure_alert"):
        assert defs.resolve_sensor_def(name).default_status == DefaultSensorStatus.RUNNING


def test_every_project_job_is_tagged_as_a_writer() -> None:
    names = {job.name for job in defs.resolve_all_job_defs()}
    assert {"ingest_and_build", "deletion_requests_job", "retention_job"} <= names
    for job in defs.resolve_all_job_defs():
        if not job.name.startswith("__"):
            assert WRITER_TAGS.items() <= dict(job.tags).items(), job.name


def test_config_override_is_merged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    override = tmp_path / "orchestration.yml"
    override.write_text(
        yaml.safe_dump({"schedules": {"ingest_and_build": {"cron": "*/5 * * * *"}}})
    )
    monkeypatch.setenv("CDP_ORCHESTRATION_CONFIG", str(override))
    cfg = load_config()
    assert cfg["schedules"]["ingest_and_build"]["cron"] == "*/5 * * * *"
    assert cfg["schedules"]["ingest_and_build"]["status"] == "RUNNING"  # kept from the default
    assert cfg["identity_checks"]  # untouched sections stay


def test_selection_strings_and_key_lists_resolve() -> None:
    ingest = resolve_selection(defs, "group:ingest")
    assert ingest and all(GRAPH.get(k).group_name == "ingest" for k in ingest)
    assert {k.to_user_string() for k in ingest} == {f"raw_{s}/{t}" for s, t in streams()}
    keys = resolve_selection(defs, ["raw_events/events"])
    assert keys == [AssetKey(["raw_events", "events"])]
    assert len(resolve_selection(defs, None)) == len(GRAPH.materializable_asset_keys)
    dbt_keys = {TRANSLATOR.get_asset_key(n) for n in manifest()["nodes"].values()}
    assert set(resolve_selection(defs, DBT_SELECTION)) == {
        k for k in dbt_keys if k in GRAPH.materializable_asset_keys
    }
    with pytest.raises(ValueError, match="no materializable asset"):
        resolve_selection(defs, "group:no_such_group")
