"""Ingest throughput: records per second per source, from HTTP response to committed DuckDB rows.

Each vendor fake runs in its own process (so the client is measured, not the GIL it would share
with the server), filled from the demo generator, with no rate limit and no faults. Every
stream is ingested into a fresh DuckDB file with the vendor's maximum page size; the figure is
records loaded / wall time of the stream's run, commit included. Local sources (event files,
the SQLite product database) are measured the same way.

If ``dlt`` is importable (or ``CDP_BENCH_DLT_PYTHON`` names a Python that has it), dlt's
``rest_api`` source loads the same Stripe fake into DuckDB for comparison.

Sizes: ``CDP_BENCH_INGEST_PEOPLE`` (60000) people in the generator.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from connectors.ingest import ingest_stream  # noqa: E402
from orchestration.demo.generator import generate  # noqa: E402
from orchestration.demo.sources import write_app_sqlite, write_events  # noqa: E402

AS_OF = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
SEED = 5
TOKEN = "bench-token"
FAKE_SERVER = """
import sys, datetime as dt
from orchestration.demo.generator import generate
vendor, people, seed, token = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
data = generate(people, seed=seed, as_of=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
if vendor == "hubspot":
    from orchestration.demo.fakes.hubspot import HubSpotFake as Fake
    fake = Fake.from_demo(data, token=token)
elif vendor == "stripe":
    from orchestration.demo.fakes.stripe import StripeFake as Fake
    fake = Fake.from_demo(data, token=token)
else:
    from orchestration.demo.fakes.zendesk import ZendeskFake as Fake
    fake = Fake.from_demo(data, email="bench@example.com", api_token=token)
fake.start()
print(fake.url, flush=True)
sys.stdin.read()
"""
VENDOR_ENV = {
    "hubspot": {"HUBSPOT_ACCESS_TOKEN": TOKEN},
    "stripe": {"STRIPE_API_KEY": TOKEN},
    "zendesk": {"ZENDESK_EMAIL": "bench@example.com", "ZENDESK_API_TOKEN": TOKEN},
}
STREAMS = {
    "hubspot": ["contacts", "companies"],
    "stripe": ["customers", "charges"],
    "zendesk": ["users", "tickets"],
}


def _serve(vendor: str, people: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", FAKE_SERVER, vendor, str(people), str(SEED), TOKEN],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, proc.stdout.readline().strip()


def _row(name: str, rows: int, seconds: float, cpu_s: float | None = None) -> None:
    rate = rows / seconds if seconds else float("nan")
    per_cpu = f"{rows / cpu_s:>10,.0f} per CPU-second" if cpu_s else ""
    print(f"  {name:<30} {rows:>9,} records {seconds:>7.2f}s {rate:>10,.0f}/s {per_cpu}")


def _measure(source: str, stream: str, db_path: Path) -> tuple[int, float, float]:
    """Rows loaded, wall seconds, and CPU seconds of this process (all its threads).

    On a busy machine wall time says more about the neighbours than about the connector;
    records per CPU-second is what one free core would sustain.
    """
    started, cpu0 = time.perf_counter(), time.process_time()
    result = ingest_stream(source, stream, db_path)
    took, cpu = time.perf_counter() - started, time.process_time() - cpu0
    if result.status != "ok":
        raise RuntimeError(f"{source}.{stream}: {result.message}")
    return result.rows_loaded, took, cpu


def bench_http(people: int, workdir: Path) -> dict[str, float]:
    rates = {}
    for vendor, streams in STREAMS.items():
        proc, url = _serve(vendor, people)
        try:
            os.environ.update(VENDOR_ENV[vendor])
            os.environ[f"{vendor.upper()}_BASE_URL"] = url
            os.environ.pop(f"{vendor.upper()}_RATE_LIMIT_PER_S", None)
            for stream in streams:
                rows, took, cpu = _measure(vendor, stream, workdir / f"{vendor}.duckdb")
                _row(f"{vendor}.{stream}", rows, took, cpu)
                rates[f"{vendor}.{stream}"] = rows / took
            if vendor == "stripe":
                bench_dlt(url, workdir)
        finally:
            proc.stdin.close()
            proc.wait(timeout=10)
    return rates


def bench_local(people: int, workdir: Path) -> None:
    data = generate(people, seed=SEED, as_of=AS_OF)
    write_events(data, workdir / "events", n_files=8)
    os.environ["CDP_EVENTS_DIR"] = str(workdir / "events")
    os.environ["CDP_APP_DB_URL"] = write_app_sqlite(data, workdir / "app.sqlite")
    for source, stream in [("events", "events"), ("app", "users"), ("app", "orders")]:
        rows, took, cpu = _measure(source, stream, workdir / "local.duckdb")
        _row(f"{source}.{stream}", rows, took, cpu)


DLT_SCRIPT = """
import sys, time, dlt
from dlt.sources.rest_api import rest_api_source
url, token, path = sys.argv[1:4]
source = rest_api_source({
    "client": {"base_url": url, "auth": {"type": "bearer", "token": token},
               "paginator": {"type": "json_link", "next_url_path": "nonexistent"}},
    "resources": [{"name": "charges", "endpoint": {
        "path": "v1/charges", "params": {"limit": 100}, "data_selector": "data",
        "paginator": {"type": "cursor", "cursor_path": "data[-1].id",
                      "cursor_param": "starting_after"}}}],
})
pipeline = dlt.pipeline("bench_stripe", destination=dlt.destinations.duckdb(path),
                        dataset_name="raw", pipelines_dir=path + ".pipelines")
started = time.perf_counter()
info = pipeline.run(source)
took = time.perf_counter() - started
rows = pipeline.last_trace.last_normalize_info.row_counts.get("charges", 0)
print(rows, took)
"""


def bench_dlt(url: str, workdir: Path) -> None:
    python = os.environ.get("CDP_BENCH_DLT_PYTHON")
    if not python:
        try:
            import dlt  # noqa: F401
        except ImportError:
            print("  dlt rest_api stripe.charges    skipped: dlt is not installed")
            return
        python = sys.executable
    proc = subprocess.run(
        [python, "-c", DLT_SCRIPT, url, TOKEN, str(workdir / "dlt.duckdb")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        print(f"  dlt rest_api stripe.charges    failed: {proc.stderr.strip()[-300:]}")
        return
    rows, took = proc.stdout.split()[-2:]
    _row("dlt rest_api stripe.charges", int(rows), float(took))


def main() -> None:
    people = int(os.environ.get("CDP_BENCH_INGEST_PEOPLE", "60000"))
    with tempfile.TemporaryDirectory(prefix="cdp-bench-ingest-") as tmp:
        workdir = Path(tmp)
        os.environ["CDP_INGEST_BATCH_ROWS"] = os.environ.get("CDP_INGEST_BATCH_ROWS", "10000")
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"ingest throughput, generator with {people:,} people (target >= 50,000/s for APIs)")
        print(f"  {os.cpu_count()} cores, load average {load} at the start")
        rates = bench_http(people, workdir)
        bench_local(people, workdir)
        slowest = min(rates, key=rates.get)
        print(f"  slowest JSON API stream: {slowest} at {rates[slowest]:,.0f} records/s")


if __name__ == "__main__":
    main()
