"""The dbt project as Dagster assets: one asset per model and seed, dbt tests as asset checks.

Asset keys are dagster-dbt's defaults (``[schema, model]`` for models, ``[source, table]`` for
sources), so ``raw_hubspot/contacts`` from the ingest assets is the very key dbt's source points
at and the lineage runs unbroken from connector to sync. Groups follow the layers of the project.

Row counts and column schemas are read after ``dbt build`` exits: dagster-dbt's own fetchers
query while dbt still runs, which on DuckDB collides with dbt's write lock.
"""

import json
import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    Output,
    TableColumn,
    TableSchema,
)
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from orchestration import settings
from orchestration.dbt_cli import dbt_executable
from orchestration.defs.config import writer_pool
from orchestration.defs.resources import WarehouseResource, dbt_target, read_only_connection

log = logging.getLogger(__name__)

# top-level model folder -> Dagster group (the layers of docs/architecture.md)
LAYER_GROUPS = {
    "staging": "staging",
    "identity": "identity",
    "marts": "profiles",
    "segments": "segments",
    "activation": "activation",
}
PROJECT_INPUTS = ("models", "macros", "seeds", "snapshots", "tests", "analyses")


def _newest_input(project_dir: Path) -> float:
    newest = 0.0
    for name in ("dbt_project.yml", "packages.yml", "dependencies.yml"):
        path = project_dir / name
        if path.exists():
            newest = max(newest, path.stat().st_mtime)
    for folder in PROJECT_INPUTS:
        for path in (project_dir / folder).rglob("*"):
            if path.is_file():
                newest = max(newest, path.stat().st_mtime)
    return newest


def _run_dbt(project_dir: Path, *args: str) -> None:
    env = {**os.environ, "CDP_DBT_TARGET": dbt_target()}
    env.setdefault("CDP_DUCKDB_PATH", str(settings.duckdb_path()))
    cmd = [dbt_executable(), *args, "--project-dir", str(project_dir)]
    cmd += ["--profiles-dir", str(settings.dbt_profiles_dir())]
    proc = subprocess.run(cmd, cwd=project_dir, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dbt {args[0]} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")


def prepare_manifest(project_dir: Path) -> Path:
    """Parse the project when its manifest is missing or older than any model, macro or seed.

    The parse writes into a private target folder and the manifest is moved into place
    atomically, so two processes loading the definitions at once never read half a file.
    """
    target = project_dir / "target"
    manifest = target / "manifest.json"
    if manifest.exists() and manifest.stat().st_mtime >= _newest_input(project_dir):
        return manifest
    has_packages = any((project_dir / n).exists() for n in ("packages.yml", "dependencies.yml"))
    if has_packages and not (project_dir / "dbt_packages").exists():
        _run_dbt(project_dir, "deps")
    scratch = target / f"parse-{uuid.uuid4().hex[:8]}"
    scratch.mkdir(parents=True)
    try:
        if (target / "partial_parse.msgpack").exists():
            shutil.copy2(target / "partial_parse.msgpack", scratch / "partial_parse.msgpack")
        log.info("parsing the dbt project (manifest missing or stale)")
        _run_dbt(project_dir, "parse", "--target-path", str(scratch), "--quiet")
        for name in ("partial_parse.msgpack", "manifest.json"):  # the manifest last
            if (scratch / name).exists():
                os.replace(scratch / name, target / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return manifest


class CdpDbtTranslator(DagsterDbtTranslator):
    """dagster-dbt's keys; groups by layer; the model's SQL description shows in the UI."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return _layer(dbt_resource_props)


def _layer(props: Mapping[str, Any]) -> str:
    if props.get("resource_type") == "source":
        return "ingest"
    fqn = list(props.get("fqn") or [])
    folders = fqn[1:-1]
    if "segment" in (props.get("tags") or []) or "segments" in folders:
        return "segments"
    if props.get("resource_type") == "seed":
        return LAYER_GROUPS.get(props.get("config", {}).get("schema") or "", "identity")
    return LAYER_GROUPS.get(folders[0] if folders else "", "profiles")


DBT_PROJECT = DbtProject(
    project_dir=settings.dbt_project_dir(),
    profiles_dir=settings.dbt_profiles_dir(),
    target=dbt_target(),
)
MANIFEST_PATH = prepare_manifest(Path(DBT_PROJECT.project_dir))
TRANSLATOR = CdpDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


@cache
def manifest() -> dict[str, Any]:
    return json.loads(MANIFEST_PATH.read_text())


@cache
def relations() -> dict[AssetKey, str]:
    """Asset key -> ``schema.table`` of every model, seed and snapshot."""
    out = {}
    for node in manifest().get("nodes", {}).values():
        if node.get("resource_type") in ("model", "seed", "snapshot"):
            key = TRANSLATOR.get_asset_key(node)
            out[key] = f"{node['schema']}.{node.get('alias') or node['name']}"
    return out


def _table_metadata(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, Any]:
    schema, table = relation.split(".", 1)
    columns = con.execute(
        "select column_name, data_type, is_nullable from information_schema.columns "
        "where table_catalog = current_database() and table_schema = ? and table_name = ? "
        "order by ordinal_position",
        [schema, table],
    ).fetchall()
    if not columns:
        return {}
    rows = con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0]
    return {
        "dagster/row_count": int(rows),
        "dagster/relation_identifier": relation,
        "dagster/column_schema": TableSchema(
            columns=[TableColumn(name=n, type=t.lower()) for n, t, _ in columns]
        ),
    }


def _with_table_metadata(
    context: AssetExecutionContext, events: list[Any], db_path: Path
) -> Iterator[Any]:
    by_key = relations()
    try:
        con = read_only_connection(db_path)
    except duckdb.Error as exc:  # the metadata is a bonus; the build itself succeeded
        log.warning("no table metadata: %s", exc)
        yield from events
        return
    try:
        for event in events:
            key = None
            if isinstance(event, Output):
                key = context.asset_key_for_output(event.output_name)
            elif isinstance(event, AssetMaterialization):
                key = event.asset_key
            relation = by_key.get(key) if key else None
            extra = _table_metadata(con, relation) if relation else {}
            yield event.with_metadata({**event.metadata, **extra}) if extra else event
    finally:
        con.close()


@dbt_assets(
    manifest=MANIFEST_PATH,
    project=DBT_PROJECT,
    dagster_dbt_translator=TRANSLATOR,
    pool=writer_pool(),
    name="dbt_models",
)
def dbt_models(
    context: AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource
) -> Iterator[Any]:
    """``dbt build`` of the selected models, holding the warehouse's writer lock throughout."""
    with warehouse.writing() as db_path:
        # the dbt profile reads CDP_DUCKDB_PATH; a subset runs only the tests whose parents are
        # all built ("buildable"): a relationships test between a selected and an unselected
        # model would otherwise read a table that may not exist
        indirect = os.environ.get("DBT_INDIRECT_SELECTION") or "buildable"
        with settings.temporary_environ(
            CDP_DUCKDB_PATH=str(db_path), DBT_INDIRECT_SELECTION=indirect
        ):
            invocation = dbt.cli(["build"], context=context, raise_on_error=False)
        events = list(invocation.stream())
        if not invocation.is_successful():
            # surface what did pass (materializations, check results) before failing the step;
            # the invocation's target folder stays for the post-mortem
            yield from events
            raise RuntimeError(
                f"dbt build failed: {invocation.get_error() or 'see the dbt logs above'}"
            )
        yield from _with_table_metadata(context, events, db_path)
    shutil.rmtree(invocation.target_path, ignore_errors=True)
