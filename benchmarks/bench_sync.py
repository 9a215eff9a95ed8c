"""Reverse-ETL figures: diff-only sends, throughput at a vendor's rate limit, diff time at 1M.

1. An unchanged segment synced a second time makes zero write calls; a 1% change sends ~1%.
2. Against a HubSpot fake allowing 100 requests per 10 s, with batches of 100, the calls the
   sync made in each whole 10 s window are compared with the 100 the limit allows (1,000
   rows/s), and the fake's count of rejected (429) requests shows it was never exceeded.
3. With 50 ms round trips, sequential batches against 8 in flight.
4. The diff of a 1M-member segment against a 1M-row sync state (1% changed) is timed in DuckDB.

Sizes can be scaled down for a quick look with ``CDP_BENCH_SYNC_SCALE`` (e.g. 0.1).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from orchestration.demo.fakes.base import FakeServer
from orchestration.demo.fakes.hubspot_write import HubSpotWriteMixin
from orchestration.settings import temporary_environ
from reverse_etl.config import SyncConfig
from reverse_etl.engine import _build_source, run_sync
from reverse_etl.state import connect, ensure_tables

SCALE = float(os.environ.get("CDP_BENCH_SYNC_SCALE", "1"))
DIFF_ROWS = int(5_000 * SCALE)
THROUGHPUT_ROWS = int(30_000 * SCALE)
BIG_ROWS = int(1_000_000 * SCALE)
TOKEN = "bench-token"
FIELDS = {"email": "email", "firstname": "first_name", "lastname": "last_name", "ltv": "ltv"}


class HubSpotBench(HubSpotWriteMixin, FakeServer):
    name = "hubspot"

    def __init__(self, **kwargs) -> None:
        self.contacts = {}
        super().__init__(**kwargs)


def make_model(db: Path, rows: int) -> None:
    """``activation.bench_members``: ``rows`` consented members with mapped fields."""
    con = connect(db)
    try:
        con.execute("create schema if not exists activation")
        con.execute(
            "create or replace table activation.bench_members as select "
            "'cus_' || i as customer_id, 'member' || i || '@example.com' as email, "
            "'First' || (i % 997) as first_name, 'Last' || (i % 991) as last_name, "
            "round((i * 37) % 5000 / 7.0, 2) as ltv, true as email_marketing_consent "
            f"from range({rows}) t(i)"
        )
    finally:
        con.close()


def change_one_percent(db: Path) -> int:
    """Change a mapped field of every 100th member; returns how many rows changed."""
    con = connect(db)
    try:
        rows = con.execute(
            "update activation.bench_members set first_name = first_name || '+' "
            "where cast(substr(customer_id, 5) as bigint) % 100 = 0 returning 1"
        ).fetchall()
    finally:
        con.close()
    return len(rows)


def sync(name: str, **meta) -> SyncConfig:
    base = {
        "destination": "hubspot",
        "mode": "upsert",
        "identity_key": "email",
        "fields": FIELDS,
        "purpose": "email_marketing",
        "model": "activation.bench_members",
        "batch_size": 100,
    }
    return SyncConfig.from_meta(name, {**base, **meta})


def bench_diff_only(work: Path) -> None:
    db = work / "diff.duckdb"
    make_model(db, DIFF_ROWS)
    with HubSpotBench(token=TOKEN) as fake:
        os.environ.update(HUBSPOT_BASE_URL=fake.url, HUBSPOT_ACCESS_TOKEN=TOKEN)
        cfg = sync("bench_diff", rate_limit={"requests": 100_000, "per_seconds": 1})
        first = run_sync(cfg, db_path=db)
        writes_before = fake.count("POST")
        second = run_sync(cfg, db_path=db)
        unchanged_writes = fake.count("POST") - writes_before
        changed = change_one_percent(db)
        third = run_sync(cfg, db_path=db)
    print(f"first sync           {first.added} rows in {first.api_calls} calls")
    print(f"unchanged re-sync    {unchanged_writes} write calls ({second.api_calls} calls in all)")
    print(
        f"1% change            {changed} rows changed -> {third.changed} sent "
        f"({third.changed / DIFF_ROWS:.2%} of {DIFF_ROWS}) in {third.api_calls} calls"
    )


def bench_throughput(work: Path) -> None:
    db = work / "throughput.duckdb"
    make_model(db, THROUGHPUT_ROWS)
    limit = (100, 10.0)
    with HubSpotBench(token=TOKEN, rate_limit=limit) as fake:
        os.environ.update(HUBSPOT_BASE_URL=fake.url, HUBSPOT_ACCESS_TOKEN=TOKEN)
        cfg = sync("bench_throughput", rate_limit={"requests": 100, "per_seconds": 10})
        result = run_sync(cfg, db_path=db)
        calls = sorted(c.at for c in fake.calls if c.status < 429)
        rejected = sum(c.status == 429 for c in fake.calls)
    ceiling = limit[0] * 100 / limit[1]
    overall = result.added / result.duration_s
    # the share of the limit used over the whole windows the run spanned
    windows = int((calls[-1] - calls[0]) // limit[1])
    used = sum(1 for t in calls if t < calls[0] + windows * limit[1])
    efficiency = used / (limit[0] * windows) if windows else float("nan")
    print(
        f"throughput           {result.added} rows, {result.api_calls} calls, "
        f"{result.duration_s:.1f}s: {overall:.0f} rows/s overall (with diff and setup)"
    )
    print(
        f"at the rate limit    {used} calls in the first {windows} full windows of "
        f"{limit[1]:.0f}s: {efficiency:.1%} of the limit = {efficiency * ceiling:.0f} rows/s "
        f"of {ceiling:.0f}; 429s received: {rejected}"
    )


def bench_concurrency(work: Path) -> None:
    """With a 50 ms round trip, batches in flight at once multiply throughput."""
    db = work / "latency.duckdb"
    make_model(db, DIFF_ROWS)
    figures = []
    for workers in (1, 8):
        with HubSpotBench(token=TOKEN, latency=0.05) as fake:
            os.environ.update(HUBSPOT_BASE_URL=fake.url, HUBSPOT_ACCESS_TOKEN=TOKEN)
            cfg = sync(f"bench_latency_{workers}", concurrency=workers)
            result = run_sync(cfg, db_path=db)
        figures.append(f"{workers} in flight: {result.added / result.duration_s:.0f} rows/s")
    print(f"50 ms round trips    {'; '.join(figures)} ({DIFF_ROWS} rows, batches of 100)")


def bench_big_diff(work: Path) -> None:
    db = work / "big.duckdb"
    make_model(db, BIG_ROWS)
    cfg = sync("bench_big")
    con = connect(db)
    try:  # a state as if the whole segment had been synced
        ensure_tables(con)
        _build_source(con, cfg)
        con.execute(
            "insert into ops.sync_state select ?, row_key, fields_hash, null, now() "
            "from _src where skip_reason is null",
            [cfg.name],
        )
    finally:
        con.close()
    changed = change_one_percent(db)
    started = time.perf_counter()
    plan = run_sync(cfg, db_path=db, dry_run=True)
    took = time.perf_counter() - started
    print(
        f"diff of {BIG_ROWS} members  {took:.2f}s in DuckDB ({changed} changed in the model, "
        f"{plan.changed} found, {plan.added} added, {plan.api_calls} calls planned)"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench_sync_") as tmp:
        work = Path(tmp)
        # the benchmarks point HubSpot at their own fakes; the caller's settings come back after
        keep = {k: os.environ.get(k) for k in ("HUBSPOT_BASE_URL", "HUBSPOT_ACCESS_TOKEN")}
        with temporary_environ(**keep):
            bench_diff_only(work)
            bench_big_diff(work)
            bench_concurrency(work)
            bench_throughput(work)


if __name__ == "__main__":
    main()
