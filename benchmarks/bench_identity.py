"""Identity resolution benchmark: accuracy against the generator's truth, speed against scipy.

Prints, for 10k and 100k people, pairwise precision and recall over source records, the largest
cluster and whether any junk or shared identifier joined two truth people; at 1M people, the time
of the dbt component step next to ``scipy.sparse.csgraph.connected_components`` on the same edge
set, the whole identity build's time and peak memory, and the cost of an incremental run that adds
1% new records relative to the full build.

Sizes can be overridden: ``CDP_BENCH_IDENTITY_SIZES=10000,100000`` and
``CDP_BENCH_IDENTITY_SCALE=1000000`` (0 skips the scale run).
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from orchestration import dbt_server
from orchestration.dbt_cli import dbt_on, dbt_on_command
from orchestration.demo.generator import TRUTH_COLUMN, DemoData, generate
from orchestration.demo.warehouse import load_raw
from orchestration.identity_explain import IDENTITY_SELECT

REPO_ROOT = Path(__file__).resolve().parent.parent
AS_OF = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)

COMPONENT_MODELS = ("int_identity__components_unchecked", "int_identity__components")

# where each identity-bearing staging model's records come from, to look their truth up
RECORD_TRUTH = {
    "stg_app__users": ("app.users", "id"),
    "stg_hubspot__contacts": ("hubspot.contacts", "id"),
    "stg_stripe__customers": ("stripe.customers", "id"),
    "stg_zendesk__users": ("zendesk.users", "id"),
    "stg_events__events": ("events.events", "message_id"),
    "stg_mailchimp__members": ("mailchimp.members", "member_key"),
    "stg_klaviyo__profiles": ("klaviyo.profiles", "id"),
}


@dataclass
class Accuracy:
    records: int
    precision: float
    recall: float
    largest_cluster: int
    truth_people_per_customer_max: int
    junk_merges: int


def run_dbt(db_path: Path, *args: str) -> dict:
    """Run dbt on ``db_path`` (target and logs beside it); returns run_results.json."""
    dbt_on(db_path, *args, project_dir=REPO_ROOT / "dbt_project")
    return json.loads((db_path.parent / "dbt_target" / "run_results.json").read_text())


def identity_build_args(
    *extra: str, tests: bool = False, dbt_vars: dict | None = None
) -> list[str]:
    """dbt arguments that build the identity models (and the seed and staging they read), with or
    without tests; ``cdp_as_of`` pinned."""
    skip_tests = [] if tests else ["--exclude-resource-type", "test", "unit_test"]
    return [
        "build",
        *skip_tests,
        "--select",
        IDENTITY_SELECT,
        "--indirect-selection",
        "cautious",
        "--vars",
        json.dumps({"cdp_as_of": AS_OF.strftime("%Y-%m-%d"), **(dbt_vars or {})}),
        *extra,
    ]


def build_identity(
    db_path: Path, *extra: str, tests: bool = False, dbt_vars: dict | None = None
) -> dict:
    """Build the identity models (see ``identity_build_args``). Returns dbt's run_results."""
    return run_dbt(db_path, *identity_build_args(*extra, tests=tests, dbt_vars=dbt_vars))


@dataclass
class BuildTiming:
    """One timed dbt command: ``process_s`` from starting the process to its exit (what a
    ``dbt`` command line costs), ``warm_s`` from handing the arguments to a process that has
    already imported dbt until the warehouse is checkpointed, ``dbt_s`` dbt's own command time
    (its resource report: after its imports, before the database's last checkpoint)."""

    process_s: float
    warm_s: float
    dbt_s: float
    run_results: dict


def timed_dbt(db_path: Path, *args: str) -> BuildTiming:
    """Run ``dbt <args>`` on ``db_path`` in a fresh worker process (benchmarks/dbt_worker.py) and
    time it three ways (see ``BuildTiming``). Raises ``RuntimeError`` when dbt fails."""
    cmd, env, cwd = dbt_on_command(db_path, *args, project_dir=REPO_ROOT / "dbt_project")
    result_path = db_path.parent / "dbt_worker_result.json"
    result_path.unlink(missing_ok=True)
    worker = [sys.executable, str(Path(__file__).with_name("dbt_worker.py")), str(db_path)]
    started = time.perf_counter()
    with subprocess.Popen(
        [*worker, str(result_path)],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the dbt worker did not start")
        proc.stdin.write(json.dumps(cmd[1:]) + "\n")
        proc.stdin.flush()
        proc.stdout.readline()
        returncode = proc.wait()
    process_seconds = time.perf_counter() - started
    if returncode != 0 or not result_path.exists():
        log = db_path.parent / "dbt_logs" / "worker_stdout.log"
        tail = log.read_text(errors="replace")[-6000:] if log.exists() else ""
        raise RuntimeError(f"dbt {' '.join(args)} failed in the worker:\n{tail}")
    result = json.loads(result_path.read_text())
    return BuildTiming(
        process_s=process_seconds,
        warm_s=float(result["seconds"]),
        dbt_s=dbt_command_seconds(db_path.parent / "dbt_logs" / "dbt.log"),
        run_results=json.loads((db_path.parent / "dbt_target" / "run_results.json").read_text()),
    )


def _served_commands() -> int:
    log = dbt_server.server_dir() / "server.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return sum(1 for line in text.splitlines() if re.search(r"child \d+: dbt ", line))


def start_dbt_server(folder: Path) -> None:
    """Point ``cdp-dbt`` at a dbt server of this benchmark's own (orchestration/dbt_server.py)
    and wait until it accepts commands."""
    folder.mkdir(mode=0o700, exist_ok=True)
    os.environ[dbt_server.ENV_DIR] = str(folder)
    os.environ[dbt_server.ENV_IDLE] = "3600"
    dbt_server.start_in_background()
    deadline = time.monotonic() + 120
    while not dbt_server.socket_path().exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the dbt server did not start: see {folder / 'server.log'}")
        time.sleep(0.1)


def served_dbt(db_path: Path, *args: str) -> BuildTiming:
    """Run ``cdp-dbt <args>`` on ``db_path`` as the project runs dbt, with its dbt server warm
    (``start_dbt_server``), and time the command line from start to exit. Raises
    ``RuntimeError`` when dbt fails or the command did not run on the server."""
    cmd, env, cwd = dbt_on_command(db_path, *args, project_dir=REPO_ROOT / "dbt_project")
    served_before = _served_commands()
    log_dir = db_path.parent / "dbt_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "served_stdout.log", "a") as out:  # noqa: PTH123
        started = time.perf_counter()
        returncode = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=out).returncode
        seconds = time.perf_counter() - started
    if returncode != 0:
        tail = (log_dir / "served_stdout.log").read_text(errors="replace")[-6000:]
        raise RuntimeError(f"dbt {' '.join(args)} failed on the dbt server:\n{tail}")
    if _served_commands() != served_before + 1:
        raise RuntimeError("the command did not run on the dbt server (it ran cold)")
    return BuildTiming(
        process_s=seconds,
        warm_s=float("nan"),
        dbt_s=dbt_command_seconds(log_dir / "dbt.log"),
        run_results=json.loads((db_path.parent / "dbt_target" / "run_results.json").read_text()),
    )


def node_seconds(run_results: dict, name: str) -> float:
    for result in run_results["results"]:
        if result["unique_id"].endswith("." + name):
            return float(result["execution_time"])
    raise KeyError(name)


_RESOURCE_REPORT = re.compile(r"Resource report: (\{.*\})")


def dbt_command_seconds(log_path: Path) -> float:
    """dbt's own wall time of the last command in ``log_path`` (its "Resource report"): the
    build from start to finish, without the Python interpreter's start and dbt's imports, which
    every dbt command pays whatever it does (about 1.5 s here)."""
    seconds = None
    for line in log_path.read_text(errors="replace").splitlines():
        match = _RESOURCE_REPORT.search(line)
        if match:
            seconds = float(json.loads(match.group(1))["command_wall_clock_time"])
    if seconds is None:
        raise ValueError(f"no resource report in {log_path}")
    return seconds


_COMPONENTS_LOG = re.compile(r"identity components: (\S+) (\d+) rounds in ([0-9.]+) s")


def component_step_seconds(log_path: Path, model: str = COMPONENT_MODELS[0]) -> float:
    """Seconds the connected-components macro of ``model`` took, as the macro logs it: wall time
    from reading the edges to the materialized labels (every round, the composition of the
    rounds' labels), without the model's own table build around it. The last run's figure."""
    seconds = None
    for line in log_path.read_text(errors="replace").splitlines():
        match = _COMPONENTS_LOG.search(line)
        if match and match.group(1) == model:
            seconds = float(match.group(3))
    if seconds is None:
        raise ValueError(f"no components timing for {model} in {log_path}")
    return seconds


def record_truth(data: DemoData) -> pl.DataFrame:
    """(record_model, record_key, person) for every identity-bearing record of the demo data."""
    frames = []
    for model, (table, key) in RECORD_TRUTH.items():
        frame = data.tables[table]
        frames.append(
            frame.select(
                pl.lit(model).alias("record_model"),
                pl.col(key).cast(pl.Utf8).alias("record_key"),
                pl.col(TRUTH_COLUMN).alias("person"),
            )
        )
    return pl.concat(frames)


def _pairs(counts: pl.Series) -> int:
    c = counts.cast(pl.Int64).to_numpy()
    return int((c * (c - 1) // 2).sum())


def score(db_path: Path, data: DemoData) -> Accuracy:
    """Pairwise precision and recall of record -> customer against record -> truth person."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        predicted = con.sql(
            "select record_model, record_key, customer_id "
            "from identity.int_identity__record_customers"
        ).pl()
        junk = con.sql(
            "select count(*) from marts.customer_identifiers as ci "
            "where (ci.id_type = 'email' and ci.id_value = 'test@test.com') "
            "or (ci.id_type = 'phone' and ci.id_value in ('+10000000000', '0000000000'))"
        ).fetchall()[0][0]
    finally:
        con.close()
    joined = record_truth(data).join(predicted, on=["record_model", "record_key"], how="inner")
    if joined.height != predicted.height:
        raise AssertionError(f"{predicted.height - joined.height} records without truth")
    both = joined.group_by("customer_id", "person").len()
    tp = _pairs(both["len"])
    pred = _pairs(joined.group_by("customer_id").len()["len"])
    true = _pairs(joined.group_by("person").len()["len"])
    people_per_customer = joined.group_by("customer_id").agg(pl.col("person").n_unique())
    return Accuracy(
        records=joined.height,
        precision=tp / pred if pred else 1.0,
        recall=tp / true if true else 1.0,
        largest_cluster=int(joined.group_by("customer_id").len()["len"].max()),
        truth_people_per_customer_max=int(people_per_customer["person"].max()),
        junk_merges=int(junk),
    )


FIRST_PASS_EDGES = """
    select e.node_a, e.node_b
    from identity.int_identity__edges as e
    where e.node_a not in (select node_id from identity.int_identity__shared_identifiers)
        and e.node_b not in (select node_id from identity.int_identity__shared_identifiers)
"""


def scipy_components(db_path: Path) -> tuple[float, float, int, int]:
    """scipy on the first-pass edge set: (cc seconds, cc + index build seconds, nodes, edges)."""
    from scipy.sparse.csgraph import connected_components

    started = time.perf_counter()
    graph, edge_count = _scipy_graph(db_path)
    cc_started = time.perf_counter()
    connected_components(graph, directed=False)
    done = time.perf_counter()
    return done - cc_started, done - started, graph.shape[0], edge_count


def _scipy_graph(db_path: Path):
    """The first-pass edge set as a scipy CSR matrix over dense node numbers."""
    from scipy.sparse import coo_matrix

    con = duckdb.connect(str(db_path), read_only=True)
    try:
        edges = con.sql(FIRST_PASS_EDGES).to_arrow_table()
    finally:
        con.close()
    a = edges.column("node_a").to_numpy()
    b = edges.column("node_b").to_numpy()
    nodes, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    n = len(nodes)
    ia, ib = inverse[: len(a)], inverse[len(a) :]
    graph = coo_matrix((np.ones(len(ia), dtype=np.int8), (ia, ib)), shape=(n, n)).tocsr()
    return graph, len(a)


def components_into(
    db_path: Path, edges_relation: str, out_relation: str, dbt_vars: dict | None = None
) -> None:
    """The component macro alone (run-operation identity_components_into) on an edge table."""
    args = json.dumps({"edges_relation": edges_relation, "out_relation": out_relation})
    extra = ["--vars", json.dumps(dbt_vars)] if dbt_vars else []
    dbt_on(
        db_path,
        "run-operation",
        "identity_components_into",
        "--args",
        args,
        *extra,
        project_dir=REPO_ROOT / "dbt_project",
    )


def components_side_by_side(db_path: Path, reps: int = 3) -> list[tuple[float, float]]:
    """(macro seconds, scipy seconds) pairs, taken back to back on the same first-pass edge set.

    A shared machine's load changes by the minute, so one in-build figure and one scipy figure
    taken a minute apart can be far off; here each macro run (the run-operation
    identity_components_into on a table of the edges, its own logged time) sits next to a scipy
    run. The edges come from a table, not through the shared-identifier anti-joins the model's
    first statement does."""
    from scipy.sparse.csgraph import connected_components

    graph, _ = _scipy_graph(db_path)
    con = duckdb.connect(str(db_path))
    try:
        con.execute(f"create or replace table main.bench_cc_edges as {FIRST_PASS_EDGES}")
    finally:
        con.close()
    pairs = []
    for _ in range(reps):
        started = time.perf_counter()
        connected_components(graph, directed=False)
        scipy_seconds = time.perf_counter() - started
        components_into(db_path, "main.bench_cc_edges", "main.bench_cc")
        log_path = db_path.parent / "dbt_logs" / "dbt.log"
        pairs.append((component_step_seconds(log_path, "identity_components_into"), scipy_seconds))
    con = duckdb.connect(str(db_path))
    try:
        con.execute("drop table main.bench_cc_edges; drop table main.bench_cc")
    finally:
        con.close()
    return pairs


def accuracy_run(n_people: int, workdir: Path) -> Accuracy:
    db_path = workdir / f"acc_{n_people}" / "cdp.duckdb"
    db_path.parent.mkdir(parents=True)
    data = generate(n_people, seed=7, as_of=AS_OF)
    load_raw(db_path, data)
    build_identity(db_path)
    return score(db_path, data)


def append_raw(db_path: Path, data: DemoData) -> dict[str, int]:
    """Insert the frames' records into the existing raw tables as a later load."""
    return load_raw(db_path, data, append=True)


def split_for_increment(data: DemoData, share: float, seed: int = 3) -> tuple[DemoData, DemoData]:
    """(base, increment): a random ``share`` of every table's records arrives later."""
    rng = np.random.default_rng(seed)
    base_tables, new_tables = {}, {}
    for name, frame in data.tables.items():
        later = pl.Series(rng.random(frame.height) < share)
        base_tables[name] = frame.filter(~later)
        new_tables[name] = frame.filter(later)
    base = DemoData(seed=data.seed, as_of=data.as_of, people=data.people, tables=base_tables)
    increment = DemoData(seed=data.seed, as_of=data.as_of, people=data.people, tables=new_tables)
    return base, increment


def _settle() -> None:
    """Let the untimed set-up's writes reach the disk before a timed build starts, so neither
    build pays for the other's (or the loader's) writeback."""
    os.sync()
    time.sleep(1)


def _restore(snapshot: Path, folder: Path) -> None:
    """Put a copy of ``snapshot`` (a warehouse folder with its dbt target and logs) back in place
    at the same path: dbt's partial parse is kept only for the same warehouse path."""
    shutil.rmtree(folder)
    shutil.copytree(snapshot, folder)


def _generate_and_load(n_people: int, db_path: Path) -> DemoData:
    """Generate ``n_people``, load all but a random 1% of every table's records into ``db_path``
    and return that 1% (the increment)."""
    data = generate(n_people, seed=5, as_of=AS_OF)
    base, increment = split_for_increment(data, 0.01)
    load_raw(db_path, base)
    return increment


def scale_run(n_people: int, workdir: Path, incremental_reps: int = 3) -> dict:
    """Full build twice in a new process and twice through ``cdp-dbt``'s warm dbt server, and the
    +1% incremental run ``incremental_reps`` times each way, each from a copy of the same state: a
    shared machine's load changes by the minute, so one pair of figures taken minutes apart can be
    far off; medians of several are steadier."""
    folder = workdir / f"scale_{n_people}"
    db_path = folder / "cdp.duckdb"
    folder.mkdir(parents=True)
    # generated and loaded in a child process: the frames take 3.5 GB at 1M people, and this
    # process would hold them (polars does not give the memory back) while every build is timed
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as loader:
        increment = loader.submit(_generate_and_load, n_people, db_path).result()
    loaded, pending = workdir / "snapshot_loaded", workdir / "snapshot_pending"
    shutil.copytree(folder, loaded)
    _settle()
    full = [timed_dbt(db_path, *identity_build_args())]
    log_path = folder / "dbt_logs" / "dbt.log"
    model_seconds = node_seconds(full[0].run_results, COMPONENT_MODELS[0])
    cc_seconds = component_step_seconds(log_path)
    scipy_cc, scipy_total, nodes, edges = scipy_components(db_path)
    # the 1% arrive: load them and run identity again, from the same state each time
    append_raw(db_path, increment)
    del increment
    gc.collect()
    shutil.copytree(folder, pending)
    incremental, served_incremental = [], []
    for rep in range(incremental_reps):
        # in turn: a new dbt process (the worker), then cdp-dbt on its warm dbt server
        if rep:
            _restore(pending, folder)
        _settle()
        incremental.append(timed_dbt(db_path, *identity_build_args()))
        _restore(pending, folder)
        _settle()
        served_incremental.append(served_dbt(db_path, *identity_build_args()))
    slowest = sorted(incremental[-1].run_results["results"], key=lambda r: -r["execution_time"])
    shutil.rmtree(pending)
    # the second full build from the loaded base again, then two through the dbt server
    _restore(loaded, folder)
    _settle()
    full.append(timed_dbt(db_path, *identity_build_args()))
    served_full = []
    for _ in range(2):
        _restore(loaded, folder)
        _settle()
        served_full.append(served_dbt(db_path, *identity_build_args()))
    shutil.rmtree(loaded)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    # after the builds: it writes and drops tables in the warehouse file
    pairs = components_side_by_side(db_path)
    figures: dict = {
        "nodes": nodes,
        "edges": edges,
        "peak_rss_mb": peak_mb,
        "components_s": cc_seconds,
        "components_model_s": model_seconds,
        "scipy_cc_s": scipy_cc,
        "scipy_cc_with_index_s": scipy_total,
        "ratio_vs_scipy_cc": cc_seconds / scipy_cc,
        "ratio_vs_scipy_with_index": cc_seconds / scipy_total,
        "side_by_side": pairs,
        "side_by_side_median_ratio": float(np.median([m / s for m, s in pairs])),
        "incremental_slowest": ", ".join(
            f"{r['unique_id'].rsplit('.', 1)[-1]} {r['execution_time']:.1f}s" for r in slowest[:5]
        ),
    }
    for way in ("process", "warm", "dbt"):
        fulls = [getattr(t, f"{way}_s") for t in full]
        incs = [getattr(t, f"{way}_s") for t in incremental]
        figures[f"full_{way}"] = fulls
        figures[f"incremental_{way}"] = incs
        figures[f"ratio_{way}"] = float(np.median(incs) / np.median(fulls))
    figures["full_served"] = [t.process_s for t in served_full]
    figures["incremental_served"] = [t.process_s for t in served_incremental]
    figures["ratio_served"] = float(
        np.median(figures["incremental_served"]) / np.median(figures["full_served"])
    )
    return figures


def main() -> None:
    sizes = [
        int(s) for s in os.environ.get("CDP_BENCH_IDENTITY_SIZES", "10000,100000").split(",") if s
    ]
    scale = int(os.environ.get("CDP_BENCH_IDENTITY_SCALE", "1000000"))
    with tempfile.TemporaryDirectory(prefix="bench_identity_") as tmp:
        workdir = Path(tmp)
        start_dbt_server(workdir / "dbt-server")
        try:
            _run(workdir, sizes, scale)
        finally:
            dbt_server.stop()


def _run(workdir: Path, sizes: list[int], scale: int) -> None:
    """The accuracy runs at ``sizes`` and the scale run at ``scale`` people, printed."""
    for n in sizes:
        started = time.perf_counter()
        acc = accuracy_run(n, workdir)
        print(
            f"identity accuracy @ {n:,} people: records={acc.records:,} "
            f"precision={acc.precision:.4f} recall={acc.recall:.4f} "
            f"largest_cluster={acc.largest_cluster} "
            f"max_truth_people_per_customer={acc.truth_people_per_customer_max} "
            f"junk_identifiers_in_customers={acc.junk_merges} "
            f"({time.perf_counter() - started:.1f}s)",
            flush=True,
        )
    if scale:
        figures = scale_run(scale, workdir)
        print(
            f"identity scale @ {scale:,} people: {figures['nodes']:,} linked identifiers, "
            f"{figures['edges']:,} edges",
            flush=True,
        )
        print(
            f"  components step (the macro's rounds) {figures['components_s']:.2f}s "
            f"(whole model {figures['components_model_s']:.2f}s) vs scipy "
            f"connected_components {figures['scipy_cc_s']:.2f}s "
            f"(with index build {figures['scipy_cc_with_index_s']:.2f}s): "
            f"ratio {figures['ratio_vs_scipy_cc']:.1f}x "
            f"({figures['ratio_vs_scipy_with_index']:.1f}x incl. index)",
            flush=True,
        )
        print(
            "  back to back on the same edges (macro s / scipy s): "
            + ", ".join(f"{m:.2f}/{s:.2f}" for m, s in figures["side_by_side"])
            + f"; median ratio {figures['side_by_side_median_ratio']:.1f}x",
            flush=True,
        )
        print(f"  peak memory {figures['peak_rss_mb']:.0f} MB", flush=True)
        for way, what in (
            (
                "served",
                "cdp-dbt's wall time, start to exit, with its dbt server warm (how the "
                "project runs dbt after its first command)",
            ),
            ("process", "a new dbt process's wall time, start to exit (a cold command)"),
            ("warm", "with dbt already imported, until the warehouse is checkpointed"),
            ("dbt", "dbt's own command time (its resource report)"),
        ):
            fulls = ", ".join(f"{s:.1f}" for s in figures[f"full_{way}"])
            incs = ", ".join(f"{s:.1f}" for s in figures[f"incremental_{way}"])
            print(
                f"  {what}: full identity build {fulls} s; +1% records incremental "
                f"run {incs} s; median ratio {figures[f'ratio_{way}']:.1%}",
                flush=True,
            )
        print(f"  slowest incremental models: {figures['incremental_slowest']}", flush=True)


if __name__ == "__main__":
    main()
