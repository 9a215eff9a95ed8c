"""The sync engine: diff a model against what the destination acknowledged, send only the diff.

One run of a sync:
1. reads the sync's model and gates every row: no identity key, suppressed
   (``ops.suppression_list``) or without consent for the sync's purpose -> skipped, with the
   reason recorded per row;
2. computes in DuckDB the diff of the remaining rows against ``ops.sync_state`` over the mapped
   fields only: added, changed, and (mirror mode) removed;
3. sends the diff in batches of the destination's size through its rate-limited client; a batch
   the destination rejects as a whole is split until the bad rows are isolated;
4. after each acknowledged batch, in one transaction, records every row's outcome in
   ``ops.sync_row_results`` and advances ``ops.sync_state`` for the rows that went through.

A killed run therefore resumes where it stopped: acknowledged batches are in the state and are
not sent again, unsent rows are still in the diff. A batch in flight when the run died, and rows
that failed, are marked unknown in the state before they are sent (an empty hash), so the next
run sends them again as changes, or removes them in mirror mode if they left the model.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from reverse_etl import destinations as _destinations  # noqa: F401  (fills REGISTRY)
from reverse_etl import settings
from reverse_etl.config import SyncConfig, SyncConfigError, get_sync, load_syncs
from reverse_etl.destinations.base import (
    REGISTRY,
    BatchRejected,
    Destination,
    MissingCredentials,
    Outcome,
    Row,
    build,
)
from reverse_etl.http import HttpError
from reverse_etl.state import columns_of, connect, ensure_tables, table_exists

log = logging.getLogger(__name__)

OPERATIONS = ("add", "change", "remove")
# (mode, diff operation) -> what the destination is asked to do; absent pairs are not sent
ACTIONS = {
    ("upsert", "add"): "upsert",
    ("upsert", "change"): "upsert",
    ("update", "add"): "update",
    ("update", "change"): "update",
    ("insert", "add"): "insert",
    ("mirror", "add"): "upsert",
    ("mirror", "change"): "upsert",
    ("mirror", "remove"): "remove",
}
_OPEN_LOCK = threading.Lock()
FETCH_CHUNK = 50_000  # rows pulled from the plan into Python at a time
MAX_FAILED_BATCHES_IN_A_ROW = 5


class SyncAborted(Exception):
    """The destination refuses every call (bad credentials, outage): stop, keep the state."""


@dataclass
class SyncResult:
    name: str
    status: str  # success | partial | failed | skipped | dry_run
    added: int = 0
    changed: int = 0
    removed: int = 0
    failed: int = 0
    skipped: int = 0
    api_calls: int = 0
    duration_s: float = 0.0
    run_id: str | None = None
    message: str | None = None
    plan: str | None = None
    planned: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        if self.plan is not None:
            return self.plan
        line = (
            f"{self.name:<34} {self.status}: +{self.added} ~{self.changed} -{self.removed} "
            f"failed={self.failed} skipped={self.skipped} calls={self.api_calls} "
            f"{self.duration_s:.2f}s"
        )
        return f"{line} {self.message}" if self.message else line


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return value.replace("'", "''")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _suppression_expr(con: duckdb.DuckDBPyConnection, columns: list[str]) -> str:
    """True when any identifier column of the row is on the suppression list."""
    if not table_exists(con, "ops", "suppression_list"):
        return "false"
    from connectors.suppression import sql_hash

    id_types = [
        r[0] for r in con.execute("select distinct id_type from ops.suppression_list").fetchall()
    ]
    checks = [
        f"{sql_hash(t, f'cast(m.{_q(t)} as varchar)')} in "
        f"(select id_value_hash from ops.suppression_list where id_type = '{_lit(t)}')"
        for t in id_types
        if t in columns
    ]
    return "(" + " or ".join(checks) + ")" if checks else "false"


def _consent(
    con: duckdb.DuckDBPyConnection, sync: SyncConfig, columns: list[str]
) -> tuple[str, str]:
    """(expression, join) giving the row's consent for the sync's purpose."""
    if not sync.purpose:
        return "true", ""
    column = f"{sync.purpose}_consent"
    if column in columns:
        return f"m.{_q(column)}", ""
    if "customer_id" in columns and column in columns_of(con, "marts.customers"):
        return (
            f"c.{_q(column)}",
            "left join marts.customers c on c.customer_id = m.customer_id",
        )
    raise SyncConfigError(
        f"sync {sync.name!r} declares purpose {sync.purpose!r} but neither {sync.model} nor "
        f"marts.customers (joined on customer_id) has a column {column!r}"
    )


def _build_source(con: duckdb.DuckDBPyConnection, sync: SyncConfig) -> None:
    """``_src``: every model row with its mapped payload, fields hash and skip reason."""
    columns = columns_of(con, sync.model)
    if not columns:
        raise SyncConfigError(f"sync {sync.name!r}: model {sync.model} does not exist (dbt build?)")
    missing = sorted({sync.identity_key, *sync.fields.values()} - set(columns))
    if missing:
        raise SyncConfigError(f"sync {sync.name!r}: {sync.model} lacks columns {missing}")
    consent, join = _consent(con, sync, columns)
    suppressed = _suppression_expr(con, columns)
    payload = ", ".join(f"{_q(dest)} := m.{_q(col)}" for dest, col in sync.fields.items())
    key = f"m.{_q(sync.identity_key)}"
    reason = (
        f"case when {key} is null then 'missing identity key' "
        f"when {suppressed} then 'suppressed' "
        f"when not coalesce({consent}, false) then 'no {sync.purpose} consent' end"
    )
    con.execute(
        f"""
        create or replace temp table _src as
        with base as (
            select cast({key} as varchar) as row_key,
                   struct_pack({payload}) as payload,
                   md5(cast(to_json(struct_pack({payload})) as varchar)) as fields_hash,
                   {reason} as skip_reason
            from {sync.model} m {join}
        )
        select row_key, payload, fields_hash,
               coalesce(skip_reason, case when row_number() over (
                   partition by row_key order by skip_reason is null desc, fields_hash
               ) > 1 then 'duplicate identity key' end) as skip_reason
        from base
        """
    )


def _build_plan(con: duckdb.DuckDBPyConnection, sync: SyncConfig) -> None:
    """``_plan``: the diff against the acknowledged state, numbered per operation."""
    if table_exists(con, "ops", "sync_state"):
        con.execute(
            "create or replace temp table _state as select row_key, fields_hash, dest_id "
            "from ops.sync_state where sync_name = ?",
            [sync.name],
        )
    else:
        con.execute(
            "create or replace temp table _state "
            "(row_key varchar, fields_hash varchar, dest_id varchar)"
        )
    # a row still in the model but gated out (consent withdrawn, suppressed) carries the reason
    remove = (
        """
        union all
        select 'remove', st.row_key, null, null, st.dest_id,
               (select max(s.skip_reason) from _src s where s.row_key = st.row_key)
        from _state st
        where not exists (
            select 1 from _src s where s.skip_reason is null and s.row_key = st.row_key
        )"""
        if sync.mode == "mirror"
        else ""
    )
    # never acknowledged (absent, or marked unknown before a send that got no answer): an add
    never_acked = "st.row_key is null or (st.fields_hash = '' and st.dest_id is null)"
    wanted = (
        never_acked if sync.mode == "insert" else "st.fields_hash is distinct from s.fields_hash"
    )
    con.execute(
        f"""
        create or replace temp table _plan as
        select *, row_number() over (partition by op order by row_key) as rn from (
            select case when {never_acked} then 'add' else 'change' end as op,
                   s.row_key, s.payload, s.fields_hash, st.dest_id, null as reason
            from _src s left join _state st on st.row_key = s.row_key
            where s.skip_reason is null and ({wanted})
            {remove}
        )
        """
    )


def _plan_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    counts = dict(con.execute("select op, count(*) from _plan group by op").fetchall())
    return {op: counts.get(op, 0) for op in OPERATIONS}


def _skipped(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return dict(
        con.execute(
            "select skip_reason, count(*) from _src where skip_reason is not null group by 1 "
            "order by 1"
        ).fetchall()
    )


def _describe_plan(
    con: duckdb.DuckDBPyConnection, sync: SyncConfig, counts: dict[str, int], skipped: dict
) -> tuple[str, int]:
    cls = REGISTRY.get(sync.destination)
    lines = [f"dry run of sync {sync.name!r} -> {sync.destination} ({sync.mode}, {sync.model})"]
    calls = 0
    for op in OPERATIONS:
        action = ACTIONS.get((sync.mode, op))
        n = counts[op]
        if action is None or cls is None:
            continue
        op_calls = cls.estimate_calls(action, n, sync) if n else 0
        calls += op_calls
        sample = [
            r[0]
            for r in con.execute(
                "select row_key from _plan where op = ? order by rn limit 5", [op]
            ).fetchall()
        ]
        more = f", ... ({n - len(sample)} more)" if n > len(sample) else ""
        shown = f": {', '.join(sample)}{more}" if sample else ""
        lines.append(f"  would {op:<6} {n:>8} rows ({action}, {op_calls} calls){shown}")
    for reason, n in skipped.items():
        lines.append(f"  skipped  {n:>8} rows: {reason}")
    lines.append(f"  API calls it would take: {calls} (plus list/audience lookups)")
    return "\n".join(lines), calls


def _send(dest: Destination, action: str, rows: list[Row]) -> list[Outcome]:
    """One outcome per row; a rejected batch is halved until the bad rows stand alone."""
    try:
        outcomes = dest.write(action, rows)
    except BatchRejected as exc:
        if len(rows) == 1:
            return [Outcome(rows[0].key, False, str(exc))]
        mid = len(rows) // 2
        return _send(dest, action, rows[:mid]) + _send(dest, action, rows[mid:])
    except HttpError as exc:
        if exc.status in (401, 403):
            raise SyncAborted(str(exc)) from exc
        return [Outcome(r.key, False, str(exc)) for r in rows]
    by_key = {o.key: o for o in outcomes}
    return [
        by_key.get(r.key) or Outcome(r.key, False, "the destination returned no result")
        for r in rows
    ]


class _Run:
    """The mutable bookkeeping of one sync run against an open warehouse connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection, sync: SyncConfig, run_id: str) -> None:
        self.con = con
        self.sync = sync
        self.run_id = run_id
        self.ok = dict.fromkeys(OPERATIONS, 0)
        self.failed = 0

    def mark_pending(self, rows: list[Row]) -> None:
        """Before a batch leaves, mark its rows' state unknown (empty hash), durably.

        A run killed between the destination's answer and our commit then still knows these
        rows may have reached the destination: the next run re-sends them if they are still
        wanted, and removes them (mirror) if they left meanwhile.
        """
        keys = pa.table({"row_key": pa.array([r.key for r in rows], pa.string())})
        self.con.register("_pending", keys)
        try:
            self.con.execute(
                "insert into ops.sync_state select ?, row_key, '', null, ? from _pending "
                "on conflict (sync_name, row_key) do update set fields_hash = ''",
                [self.sync.name, _now()],
            )
        finally:
            self.con.unregister("_pending")

    def record(self, op: str, rows: list[Row], hashes: dict[str, str], outcomes: list[Outcome]):
        table = pa.table(
            {
                "row_key": pa.array([o.key for o in outcomes], pa.string()),
                "ok": pa.array([o.ok for o in outcomes], pa.bool_()),
                "error": pa.array([o.error for o in outcomes], pa.string()),
                "dest_id": pa.array([o.dest_id for o in outcomes], pa.string()),
                "fields_hash": pa.array([hashes.get(o.key) for o in outcomes], pa.string()),
            }
        )
        con, now = self.con, _now()
        con.register("_batch", table)
        try:
            con.begin()
            con.execute(
                "insert into ops.sync_row_results select ?, ?, row_key, ?, "
                "case when ok then 'success' else 'failed' end, error, ? from _batch",
                [self.run_id, self.sync.name, op, now],
            )
            if op == "remove":
                con.execute(
                    "delete from ops.sync_state where sync_name = ? and row_key in "
                    "(select row_key from _batch where ok)",
                    [self.sync.name],
                )
            else:
                con.execute(
                    "insert into ops.sync_state select ?, row_key, fields_hash, dest_id, ? "
                    "from _batch where ok on conflict (sync_name, row_key) do update set "
                    "fields_hash = excluded.fields_hash, "
                    "dest_id = coalesce(excluded.dest_id, sync_state.dest_id), "
                    "synced_at = excluded.synced_at",
                    [self.sync.name, now],
                )
            con.commit()
        except Exception:
            con.rollback()
            raise
        finally:
            con.unregister("_batch")
        good = sum(o.ok for o in outcomes)
        self.ok[op] += good
        self.failed += len(outcomes) - good


def _batches(con: duckdb.DuckDBPyConnection, op: str, size: int):
    """(rows, hashes) per batch of one operation, pulled from the plan a chunk at a time."""
    total = con.execute("select count(*) from _plan where op = ?", [op]).fetchall()[0][0]
    for start in range(1, total + 1, FETCH_CHUNK):
        chunk = (
            con.sql(
                "select row_key, payload, fields_hash, dest_id, reason from _plan "
                "where op = ? and rn between ? and ? order by rn",
                params=[op, start, start + FETCH_CHUNK - 1],
            )
            .to_arrow_table()
            .to_pylist()
        )
        for i in range(0, len(chunk), size):
            part = chunk[i : i + size]
            rows = [Row(r["row_key"], r["payload"] or {}, r["dest_id"], r["reason"]) for r in part]
            yield rows, {r["row_key"]: r["fields_hash"] for r in part}


def _send_guarded(dest: Destination, action: str, rows: list[Row], sync_name: str) -> list:
    try:
        return _send(dest, action, rows)
    except SyncAborted:
        raise
    except Exception as exc:  # a destination bug: record it per row, keep going
        log.exception("sync %s: batch failed", sync_name)
        return [Outcome(r.key, False, f"{type(exc).__name__}: {exc}") for r in rows]


def _send_plan(run: _Run, dest: Destination, size: int, workers: int = 1) -> None:
    """Send every batch; with ``workers`` > 1, that many batches are in flight at once.

    Only this thread touches the warehouse: rows are marked pending before their batch is
    handed to a worker, and outcomes are recorded here as batches complete, in any order.
    """
    failed_in_a_row = 0

    def settle(op: str, rows: list[Row], hashes: dict[str, str], outcomes: list) -> None:
        nonlocal failed_in_a_row
        run.record(op, rows, hashes, outcomes)
        failed_in_a_row = failed_in_a_row + 1 if not any(o.ok for o in outcomes) else 0
        if failed_in_a_row >= MAX_FAILED_BATCHES_IN_A_ROW:
            raise SyncAborted(
                f"{failed_in_a_row} batches in a row failed; last error: {outcomes[0].error}"
            )

    for op in OPERATIONS:
        action = ACTIONS.get((run.sync.mode, op))
        if action is None:
            continue
        if workers <= 1:
            for rows, hashes in _batches(run.con, op, size):
                run.mark_pending(rows)
                settle(op, rows, hashes, _send_guarded(dest, action, rows, run.sync.name))
            continue
        with ThreadPoolExecutor(workers, thread_name_prefix=f"sync-{run.sync.name}") as pool:
            in_flight: dict[Future, tuple[list[Row], dict[str, str]]] = {}
            for rows, hashes in _batches(run.con, op, size):
                while len(in_flight) >= workers:
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        settle(op, *in_flight.pop(future), future.result())
                run.mark_pending(rows)
                future = pool.submit(_send_guarded, dest, action, rows, run.sync.name)
                in_flight[future] = (rows, hashes)
            for future in as_completed(list(in_flight)):
                settle(op, *in_flight.pop(future), future.result())


def _resolve(sync: str | SyncConfig) -> SyncConfig:
    return sync if isinstance(sync, SyncConfig) else get_sync(sync)


def _dry_run(sync: SyncConfig, path: Path, started: float) -> SyncResult:
    if not path.exists():
        raise FileNotFoundError(f"warehouse {path} does not exist: run ingest and build first")
    con = connect(path, read_only=True)
    try:
        _build_source(con, sync)
        _build_plan(con, sync)
        counts = _plan_counts(con)
        skipped = _skipped(con)
        plan, calls = _describe_plan(con, sync, counts, skipped)
    finally:
        con.close()
    return SyncResult(
        sync.name,
        "dry_run",
        added=counts["add"],
        changed=counts["change"],
        removed=counts["remove"] if sync.mode == "mirror" else 0,
        skipped=sum(skipped.values()),
        api_calls=calls,
        duration_s=time.perf_counter() - started,
        plan=plan,
        planned=counts,
    )


def run_sync(
    name: str | SyncConfig, db_path: str | Path | None = None, dry_run: bool = False
) -> SyncResult:
    """Run one sync (by name, or a SyncConfig); a dry run only reads and plans."""
    started = time.perf_counter()
    sync = _resolve(name)
    path = Path(db_path) if db_path else settings.duckdb_path()
    if dry_run:
        return _dry_run(sync, path, started)

    run_id = uuid.uuid4().hex
    try:
        dest: Destination | None = build(sync)
        skip_message = None
    except MissingCredentials as exc:
        dest, skip_message = None, str(exc)
        log.warning("sync %s skipped: %s", sync.name, skip_message)

    path.parent.mkdir(parents=True, exist_ok=True)
    con = connect(path)
    result = SyncResult(sync.name, "running", run_id=run_id)
    try:
        ensure_tables(con)
        con.execute(
            "update ops.sync_runs set status = 'interrupted' "
            "where sync_name = ? and status = 'running'",
            [sync.name],
        )
        con.execute(
            "insert into ops.sync_runs (run_id, sync_name, destination, mode, status, started_at) "
            "values (?, ?, ?, ?, 'running', ?)",
            [run_id, sync.name, sync.destination, sync.mode, _now()],
        )
        if dest is None:
            result.status, result.message = "skipped", skip_message
        else:
            _execute(con, sync, dest, run_id, result)
    except (SyncConfigError, SyncAborted, duckdb.Error, HttpError) as exc:
        log.error("sync %s failed: %s", sync.name, exc)
        result.status, result.message = "failed", str(exc)
    except Exception as exc:  # a bug: recorded as a failed run, not a run left "running"
        log.exception("sync %s failed", sync.name)
        result.status, result.message = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        if dest is not None:
            result.api_calls = dest.api_calls
            dest.close()
        result.duration_s = time.perf_counter() - started
        _finish(con, result)
        con.close()
    return result


def _execute(
    con: duckdb.DuckDBPyConnection, sync: SyncConfig, dest: Destination, run_id: str, result
) -> None:
    _build_source(con, sync)
    con.execute(
        "insert into ops.sync_row_results select ?, ?, row_key, 'skip', 'skipped', skip_reason, ? "
        "from _src where skip_reason is not null",
        [run_id, sync.name, _now()],
    )
    result.skipped = sum(_skipped(con).values())
    _build_plan(con, sync)
    counts = _plan_counts(con)
    run = _Run(con, sync, run_id)
    try:
        if any(counts[op] for op in OPERATIONS if ACTIONS.get((sync.mode, op))):
            with _OPEN_LOCK:  # two syncs must not both create the same list or audience
                dest.open()
            size = min(sync.batch_size or dest.max_batch_size, dest.max_batch_size)
            workers = max(1, min(sync.concurrency or 1, getattr(dest, "max_concurrency", 1)))
            _send_plan(run, dest, size, workers)
    finally:
        result.added, result.changed, result.removed = (run.ok[op] for op in OPERATIONS)
        result.failed = run.failed
    sent = sum(run.ok.values())
    result.status = "success" if not run.failed else "partial" if sent else "failed"


def _finish(con: duckdb.DuckDBPyConnection, result: SyncResult) -> None:
    try:
        con.execute(
            "update ops.sync_runs set status = ?, finished_at = ?, rows_added = ?, "
            "rows_changed = ?, rows_removed = ?, rows_failed = ?, rows_skipped = ?, "
            "api_calls = ?, duration_s = ?, message = ? where run_id = ?",
            [
                result.status,
                _now(),
                result.added,
                result.changed,
                result.removed,
                result.failed,
                result.skipped,
                result.api_calls,
                result.duration_s,
                result.message,
                result.run_id,
            ],
        )
    except duckdb.Error:
        log.exception("sync %s: could not record the run", result.name)


def run_syncs(
    names: list[str] | None = None,
    db_path: str | Path | None = None,
    dry_run: bool = False,
    project_dir: str | Path | None = None,
) -> list[SyncResult]:
    """Run the named syncs (all declared ones when None), one after the other."""
    syncs = load_syncs(project_dir)
    if names:
        by_name = {s.name: s for s in syncs}
        unknown = sorted(set(names) - set(by_name))
        if unknown:
            raise SyncConfigError(f"unknown syncs: {', '.join(unknown)}")
        syncs = [by_name[n] for n in names]
    results = []
    for sync in syncs:
        try:
            results.append(run_sync(sync, db_path=db_path, dry_run=dry_run))
        except Exception as exc:  # one broken sync must not hide the others' results
            log.exception("sync %s failed", sync.name)
            results.append(SyncResult(sync.name, "failed", message=str(exc)))
    return results
