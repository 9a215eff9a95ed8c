"""Collector, trigger and profile-lookup benchmark (issue 9's measured targets).

Runs ``cdp collect``'s app in a subprocess (its own interpreter, as in production) against a
synthetic 100k-customer snapshot, and prints:

- collector throughput with every event fsynced before its 200, batches of 100 events, from
  concurrent clients: events/s and request latency p50/p99 (target >= 5,000 events/s);
- trigger latency from the start of the ``POST`` to the Slack message arriving at a local
  receiver, for the pricing-page rule (target p95 <= 2 s);
- profile lookup latency at 100k customers, in process and over HTTP (target p99 <= 50 ms).

Sizes can be overridden: ``CDP_BENCH_COLLECTOR_CUSTOMERS`` (100000),
``CDP_BENCH_COLLECTOR_BATCHES`` (600 per run), ``CDP_BENCH_COLLECTOR_CLIENTS`` (``2,8``: one
throughput run per concurrency level).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # the synthetic marts builder lives with the tests

from orchestration.demo.fakes.webhook import WebhookReceiver  # noqa: E402
from orchestration.serve.profiles import ProfileStore  # noqa: E402
from orchestration.serve.snapshot import refresh  # noqa: E402
from orchestration.serve.writer import read_events  # noqa: E402
from tests.serve.fixtures import HIGH_VALUE, build_marts  # noqa: E402

WRITE_KEY = "bench-write-key"
API_TOKEN = "bench-api-token"


def _int_env(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_collector(workdir: Path, slack_url: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {
        **os.environ,
        "CDP_EVENTS_DIR": str(workdir / "events"),
        "CDP_WRITE_KEYS": WRITE_KEY,
        "CDP_API_TOKEN": API_TOKEN,
        "CDP_DUCKDB_PATH": str(workdir / "cdp.duckdb"),
        "CDP_SNAPSHOT_DIR": str(workdir / "snapshot"),
        "CDP_TRIGGER_FIRINGS_DIR": str(workdir / "firings"),
        "SLACK_WEBHOOK_URL": slack_url,
    }
    env.pop("CDP_TRIGGERS_FILE", None)  # the shipped rules, with the pricing-page rule
    proc = subprocess.Popen(
        [sys.executable, "-c", f"from orchestration.serve.app import serve; serve(port={port})"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            health = requests.get(f"{url}/health", timeout=1).json()
            if health.get("snapshot"):
                return proc, url
        except requests.RequestException:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the collector did not start")


def bench_throughput(url: str, batches: int, clients: int) -> dict[str, float]:
    """Concurrent clients posting batches of 100 pre-encoded events; every 200 is durable."""
    bodies = []
    for b in range(batches):
        events = [
            {
                "type": "track",
                "event": "Bench Event",
                "anonymousId": f"bench-anon-{b % 997}",
                "messageId": uuid.uuid4().hex,
                "properties": {"i": i, "sku": f"sku-{i % 50}", "price": 9.99},
                "context": {"library": {"name": "bench"}},
                "timestamp": "2026-11-01T10:00:00.000Z",
            }
            for i in range(100)
        ]
        bodies.append(json.dumps({"batch": events}).encode())
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    cursor = iter(range(batches))

    def client() -> None:
        nonlocal failures
        session = requests.Session()
        session.auth = (WRITE_KEY, "")
        headers = {"Content-Type": "application/json"}
        for b in cursor:
            started = time.perf_counter()
            r = session.post(f"{url}/v1/batch", data=bodies[b], headers=headers, timeout=30)
            took = time.perf_counter() - started
            with lock:
                latencies.append(took)
                failures += r.status_code != 200

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {
        "events": batches * 100,
        "seconds": elapsed,
        "events_per_s": batches * 100 / elapsed,
        "p50_ms": _pct(latencies, 0.50) * 1000,
        "p99_ms": _pct(latencies, 0.99) * 1000,
        "failures": failures,
    }


def bench_triggers(url: str, slack: WebhookReceiver, user_ids: list[str]) -> dict[str, float]:
    """Pricing-page visits of distinct high-value customers, ~20/s; POST start -> Slack."""
    sent: dict[str, float] = {}
    session = requests.Session()
    session.auth = (WRITE_KEY, "")
    for user in user_ids:
        body = {"type": "page", "userId": user, "properties": {"path": "/pricing"}}
        sent[f"person{user}@example.com"] = time.time()
        r = session.post(f"{url}/v1/page", json=body, timeout=10)
        assert r.status_code == 200, r.text
        time.sleep(0.05)

    def delivered() -> int:
        return sum(any(w in sent for w in m["text"].split()) for m in slack.slack_messages)

    deadline = time.monotonic() + 30
    while delivered() < len(user_ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    arrivals = [c.at for c in slack.calls if c.path.startswith("/services/")]
    latencies = []
    for message, at in zip(slack.slack_messages, arrivals, strict=False):
        email = next((w for w in message["text"].split() if w in sent), None)
        if email is not None:
            latencies.append(at - sent[email])
    return {
        "fired": len(latencies),
        "expected": len(user_ids),
        "p50_ms": _pct(latencies, 0.50) * 1000 if latencies else float("nan"),
        "p95_ms": _pct(latencies, 0.95) * 1000 if latencies else float("nan"),
    }


def bench_lookups(url: str, store: ProfileStore, n_customers: int, n: int = 2000) -> dict:
    step = max(1, n_customers // n)
    identifiers = [f"person{i}@example.com" for i in range(1, n_customers + 1, step)][:n]
    in_process = []
    for identifier in identifiers:
        started = time.perf_counter()
        assert store.lookup(identifier) is not None
        in_process.append(time.perf_counter() - started)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {API_TOKEN}"
    over_http = []
    for identifier in identifiers[:1000]:
        started = time.perf_counter()
        r = session.get(f"{url}/v1/profiles/email:{identifier}", timeout=10)
        over_http.append(time.perf_counter() - started)
        assert r.status_code == 200
    return {
        "lookups": len(identifiers),
        "in_process_p50_ms": _pct(in_process, 0.5) * 1000,
        "in_process_p99_ms": _pct(in_process, 0.99) * 1000,
        "http_p50_ms": _pct(over_http, 0.5) * 1000,
        "http_p99_ms": _pct(over_http, 0.99) * 1000,
    }


def main() -> None:
    n_customers = _int_env("CDP_BENCH_COLLECTOR_CUSTOMERS", 100_000)
    batches = _int_env("CDP_BENCH_COLLECTOR_BATCHES", 600)
    clients = [int(c) for c in (os.environ.get("CDP_BENCH_COLLECTOR_CLIENTS") or "2,8").split(",")]
    acknowledged = 0
    with tempfile.TemporaryDirectory(prefix="bench-collector-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        build_marts(workdir / "cdp.duckdb", n_customers)
        version = refresh(workdir / "cdp.duckdb", workdir / "snapshot")
        print(f"snapshot of {n_customers} customers built in {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        store = ProfileStore(version)
        print(f"snapshot loaded in memory in {time.perf_counter() - started:.2f}s")

        with WebhookReceiver(secret="") as slack:
            proc, url = _start_collector(workdir, slack.url + "/services/T0/B0/bench")
            try:
                for n_clients in clients:
                    t = bench_throughput(url, batches, n_clients)
                    acknowledged += t["events"] - t["failures"] * 100
                    print(
                        f"collector: {t['events']} events in batches of 100 from {n_clients} "
                        f"clients, fsynced before 200: {t['events_per_s']:,.0f} events/s "
                        f"(target >= 5,000), request p50 {t['p50_ms']:.1f} ms, "
                        f"p99 {t['p99_ms']:.1f} ms, non-200: {t['failures']}"
                    )
                high = [str(i) for i in range(1, n_customers + 1) if (i * 37) % 1000 >= HIGH_VALUE]
                tr = bench_triggers(url, slack, high[:100])
                print(
                    f"triggers: {tr['fired']}/{tr['expected']} pricing-page alerts delivered, "
                    f"POST -> Slack p50 {tr['p50_ms']:.0f} ms, p95 {tr['p95_ms']:.0f} ms "
                    "(target p95 <= 2,000 ms)"
                )
                # the same while two clients keep the collector busy with batches
                load = threading.Thread(target=bench_throughput, args=(url, batches, 2))
                load.start()
                tr = bench_triggers(url, slack, high[100:200])
                load.join()
                acknowledged += batches * 100
                print(
                    f"triggers under batch load: {tr['fired']}/{tr['expected']} delivered, "
                    f"POST -> Slack p50 {tr['p50_ms']:.0f} ms, p95 {tr['p95_ms']:.0f} ms"
                )
                lk = bench_lookups(url, store, n_customers)
                print(
                    f"profile lookup at {n_customers:,} customers ({lk['lookups']} lookups): "
                    f"in process p50 {lk['in_process_p50_ms']:.2f} ms, "
                    f"p99 {lk['in_process_p99_ms']:.2f} ms; over HTTP p50 "
                    f"{lk['http_p50_ms']:.2f} ms, p99 {lk['http_p99_ms']:.2f} ms "
                    "(target p99 <= 50 ms)"
                )
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        stored = read_events(workdir / "events")
        print(
            f"durability check: {len(stored)} events in published files "
            f"({acknowledged + 200} acknowledged)"
        )


if __name__ == "__main__":
    main()
