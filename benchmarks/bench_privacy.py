"""Privacy benchmark: how long forgetting people takes on a generated company.

Builds a warehouse from the generator (raw tables + dbt build), then prints:

- one ``forget``: the warehouse step (resolve, suppress, delete in every table), the dbt
  rebuild, the verification scan, and the rows and tables scanned;
- a batch of deletion requests processed together (one rebuild serves the batch): per person;
- one retention run over every raw table.

Size: ``CDP_BENCH_PRIVACY_PEOPLE`` (20000) people, ``CDP_BENCH_PRIVACY_BATCH`` (10) requests.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import polars as pl  # noqa: E402

from connectors.loader import connect  # noqa: E402
from orchestration.demo.generator import generate  # noqa: E402
from orchestration.demo.warehouse import load_raw  # noqa: E402
from orchestration.privacy.deletion_requests import (  # noqa: E402
    process_deletion_requests,
    submit_deletion_request,
)
from orchestration.privacy.forget import ForgetJob, dbt_rebuild, run_rebuild  # noqa: E402
from orchestration.privacy.retention import apply_retention  # noqa: E402


def _timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    people = int(os.environ.get("CDP_BENCH_PRIVACY_PEOPLE", "20000"))
    batch = int(os.environ.get("CDP_BENCH_PRIVACY_BATCH", "10"))
    as_of = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    with tempfile.TemporaryDirectory(prefix="cdp-bench-privacy-") as tmp:
        db = Path(tmp) / "cdp.duckdb"
        data = generate(people, seed=5, as_of=as_of)
        load_raw(db, data)
        code, took = _timed(dbt_rebuild(db), [])
        if code != 0:
            raise RuntimeError("dbt build failed; run `cdp build` to see why")
        con = connect(db, read_only=True)
        tables = con.execute(
            "select count(*), sum(estimated_size) from duckdb_tables() "
            "where database_name = current_database()"
        ).fetchone()
        con.close()
        print(
            f"warehouse: {people} people, {data.n_records} source records; "
            f"{tables[0]} tables, ~{tables[1]} rows; dbt build {took:.1f}s"
        )

        emails = data.tables["app.users"]["email"].str.strip_chars().str.to_lowercase()
        emails = emails.unique(maintain_order=True).to_list()

        job = ForgetJob(db, emails[0])
        _, erase = _timed(job.erase_warehouse)
        _, rebuild = _timed(run_rebuild, [job], dbt_rebuild(db))
        residual, verify = _timed(job.verify)
        deleted = sum(job.touched.values())
        print(
            f"forget one person: warehouse step {erase:.2f}s ({deleted} rows in "
            f"{len(job.touched)} tables), rebuild {rebuild:.1f}s, verify {verify:.2f}s, "
            f"left after: {residual}"
        )

        for email in emails[1 : 1 + batch]:
            submit_deletion_request(email, db)
        receipts, took = _timed(process_deletion_requests, db, destinations=False)
        ok = sum(r.ok for r in receipts)
        print(
            f"deletion requests: {len(receipts)} processed in {took:.1f}s "
            f"({took / max(1, len(receipts)):.2f}s per person, one rebuild), {ok} complete"
        )

        config = {
            "sources": {"events": {"days": 30, "streams": {"events": {"column": "timestamp"}}}}
        }
        results, took = _timed(apply_retention, db, config=config, now=as_of.replace(tzinfo=None))
        print(
            f"retention: {sum(r.rows_deleted for r in results)} rows past 30 days deleted "
            f"in {took:.2f}s"
        )
        expected = (
            data.tables["events.events"]
            .filter(pl.col("timestamp") < as_of - dt.timedelta(days=30))
            .height
        )
        print(f"  (events older than 30 days in the source data: {expected}, less those forgotten)")


if __name__ == "__main__":
    main()
