"""Materialize the asset graph in process: what ``cdp run``, ``cdp build`` and ``cdp demo`` do.

The run goes through Dagster, against the project's instance (``DAGSTER_HOME``) when it exists,
so a run started from the command line shows in the UI beside scheduled ones, with the same
metadata and checks. The summary keeps plain values only, for printing and for tests.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetKey, AssetSelection, DagsterInstance, Definitions, TableSchema

from orchestration import settings
from orchestration.defs.config import writer_pool
from orchestration.defs.secrets import redact, step_failure_message

log = logging.getLogger(__name__)

Selection = str | Sequence[str] | None
# what `cdp build` materializes: every dbt model and seed, with the dbt tests and identity checks
DBT_SELECTION = "kind:dbt"


@dataclass
class CheckOutcome:
    asset: str
    name: str
    passed: bool
    severity: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSummary:
    success: bool
    run_id: str
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> metadata
    checks: list[CheckOutcome] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)
    failure: str | None = None
    duration_s: float = 0.0

    @property
    def not_materialized(self) -> list[str]:
        return [key for key in self.selected if key not in self.assets]

    def describe(self) -> str:
        state = "succeeded" if self.success else "FAILED"
        lines = [
            f"run {self.run_id[:8]} {state}: {len(self.assets)}/{len(self.selected)} assets "
            f"materialized in {self.duration_s:.1f}s"
        ]
        for key, meta in self.assets.items():
            shown = {
                k: v
                for k, v in meta.items()
                if k.startswith("rows_") or k in ("status", "dagster/row_count")
            }
            if shown:
                figures = " ".join(f"{k.removeprefix('dagster/')}={v}" for k, v in shown.items())
                lines.append(f"  {key:<44} {figures}")
        failed = [c for c in self.checks if not c.passed]
        lines.append(f"  checks: {len(self.checks) - len(failed)}/{len(self.checks)} passed")
        lines += [f"    {c.severity.lower()}: {c.asset} {c.name}" for c in failed]
        if self.not_materialized:
            lines.append(f"  not materialized: {', '.join(self.not_materialized)}")
        if self.failure:
            lines.append(f"  failure: {self.failure}")
        return "\n".join(lines)


def resolve_selection(defs: Definitions, selection: Selection) -> list[AssetKey]:
    """Asset keys for ``None`` (every materializable asset), a selection string such as
    ``group:ingest`` or ``key:raw_app/*``, or a list of ``a/b`` keys."""
    graph = defs.resolve_asset_graph()
    if selection is None:
        chosen = AssetSelection.all()
    elif isinstance(selection, str):
        chosen = AssetSelection.from_string(selection)
    else:
        chosen = AssetSelection.assets(*(AssetKey.from_user_string(k) for k in selection))
    keys = chosen.resolve(graph)
    materializable = {k for k in keys if graph.get(k).is_materializable}
    if not materializable:
        raise ValueError(f"the selection {selection!r} matches no materializable asset")
    return sorted(materializable, key=lambda k: k.to_user_string())


def _plain(value: Any) -> Any:
    raw = getattr(value, "value", value)
    if isinstance(raw, TableSchema):
        return {c.name: c.type for c in raw.columns}
    if isinstance(raw, int | float | str | bool) or raw is None:
        return raw
    return str(raw)


def ensure_writer_pool(instance: DagsterInstance) -> None:
    """Create the writer pool's slots up front: two runs that both find the pool missing would
    each create it and both take "the" slot."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return
    pool = writer_pool()
    if pool not in storage.get_concurrency_keys():
        if not storage.initialize_concurrency_limit_to_default(pool):
            storage.set_concurrency_slots(pool, 1)


@contextlib.contextmanager
def _instance(instance: DagsterInstance | None) -> Iterator[DagsterInstance]:
    if instance is not None:
        yield instance
        return
    home = settings.dagster_home()
    if (home / "dagster.yaml").exists() or home.is_dir():
        with DagsterInstance.from_config(str(home)) as persistent:
            yield persistent
    else:
        with DagsterInstance.ephemeral() as ephemeral:
            yield ephemeral


def run_all(
    selection: Selection = None,
    instance: DagsterInstance | None = None,
    defs: Definitions | None = None,
    tags: dict[str, str] | None = None,
    log_level: str = "INFO",
) -> RunSummary:
    """Materialize ``selection`` (everything by default) in this process; never raises on a
    failed step: the summary says what failed. ``log_level`` is the console's: Dagster's own
    step events are DEBUG, so INFO shows what the steps say and the run's start and end."""
    settings.export_env()
    logging.getLogger("alembic").setLevel(logging.WARNING)  # instance storage migrations
    if defs is None:
        from orchestration.definitions import defs
    keys = resolve_selection(defs, selection)
    job = defs.resolve_implicit_global_asset_job_def()
    started = time.perf_counter()
    with _instance(instance) as inst:
        ensure_writer_pool(inst)
        result = job.execute_in_process(
            instance=inst,
            asset_selection=keys,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            tags={"cdp/launched_by": "cdp run", "cdp/warehouse": "writer", **(tags or {})},
        )
    summary = RunSummary(
        success=result.success,
        run_id=result.run_id,
        selected=[k.to_user_string() for k in keys],
        duration_s=time.perf_counter() - started,
    )
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        summary.assets[mat.asset_key.to_user_string()] = {
            k: _plain(v) for k, v in mat.metadata.items()
        }
    for evaluation in result.get_asset_check_evaluations():
        summary.checks.append(
            CheckOutcome(
                asset=evaluation.asset_key.to_user_string(),
                name=evaluation.check_name,
                passed=evaluation.passed,
                severity=evaluation.severity.value,
                metadata={k: _plain(v) for k, v in evaluation.metadata.items()},
            )
        )
    failures = result.get_step_failure_events()
    if failures:
        summary.failure = "; ".join(f"{e.step_key}: {step_failure_message(e)}" for e in failures)
    elif not result.success:
        summary.failure = "the run failed (see the Dagster event log)"
    summary.failure = redact(summary.failure)
    log.info("run %s %s", result.run_id, "succeeded" if result.success else "failed")
    return summary
