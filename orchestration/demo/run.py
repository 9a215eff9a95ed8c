"""`cdp demo`: the whole CDP on one machine, against local vendor-faithful fakes.

``DemoStack`` starts the fake APIs filled from the generator (HubSpot, Stripe, Zendesk,
Mailchimp and Klaviyo as sources; HubSpot, Mailchimp, Klaviyo and a webhook receiver as
destinations), writes the event
files and the product database, and points the environment variables at them. ``run_demo``
then materializes the asset graph through Dagster and prints what came out. Tests use
``DemoStack`` too, so the demo and the end-to-end tests exercise the same wiring.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from orchestration import settings
from orchestration.demo.generator import DemoData, generate

log = logging.getLogger(__name__)

# Demo credentials: the fakes check them like the vendors do. Real ones come from the environment.
DEMO_ENV = {
    "HUBSPOT_ACCESS_TOKEN": "demo-hubspot-token",
    "STRIPE_API_KEY": "sk_test_demo",
    "ZENDESK_EMAIL": "demo@example.com",
    "ZENDESK_API_TOKEN": "demo-zendesk-token",
    "MAILCHIMP_API_KEY": "demo0000000000000000000000000000-us1",
    "KLAVIYO_API_KEY": "pk_demo",
    "CDP_WEBHOOK_SECRET": "demo-webhook-secret",
    "CDP_WRITE_KEYS": "demo-write-key",
    "CDP_API_TOKEN": "demo-api-token",
}


@dataclass
class DemoStack:
    """Running fakes plus the files a demo or an end-to-end test needs."""

    data: DemoData
    workdir: Path
    fault_rate: float = 0.0
    servers: dict[str, object] = field(default_factory=dict)
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    def _set_env(self, key: str, value: str) -> None:
        self._saved_env.setdefault(key, os.environ.get(key))
        os.environ[key] = value

    def start(self) -> DemoStack:
        from orchestration.demo.fakes.hubspot_write import hubspot_fake_class
        from orchestration.demo.fakes.klaviyo import KlaviyoFake
        from orchestration.demo.fakes.mailchimp import MailchimpFake
        from orchestration.demo.fakes.stripe import StripeFake
        from orchestration.demo.fakes.webhook import WebhookReceiver
        from orchestration.demo.fakes.zendesk import ZendeskFake
        from orchestration.demo.sources import write_app_sqlite, write_events

        for key, value in DEMO_ENV.items():
            self._set_env(key, os.environ.get(key) or value)
        common = {"fault_rate": self.fault_rate, "seed": self.data.seed}
        self.servers = {
            "hubspot": hubspot_fake_class().from_demo(
                self.data, token=os.environ["HUBSPOT_ACCESS_TOKEN"], **common
            ),
            "stripe": StripeFake.from_demo(self.data, token=os.environ["STRIPE_API_KEY"], **common),
            "zendesk": ZendeskFake.from_demo(self.data, **common),
            # the email tools are sources (their members and consent) and destinations alike
            "mailchimp": MailchimpFake.from_demo(self.data, **common),
            "klaviyo": KlaviyoFake.from_demo(self.data, **common),
            "webhook": WebhookReceiver(),
        }
        for server in self.servers.values():
            server.start()
        urls = {name: server.url for name, server in self.servers.items()}
        self._set_env("HUBSPOT_BASE_URL", urls["hubspot"])
        self._set_env("STRIPE_BASE_URL", urls["stripe"])
        self._set_env("ZENDESK_BASE_URL", urls["zendesk"])
        self._set_env("MAILCHIMP_BASE_URL", urls["mailchimp"])
        self._set_env("KLAVIYO_BASE_URL", urls["klaviyo"])
        self._set_env("CDP_WEBHOOK_URL", urls["webhook"] + "/hooks/cdp")
        self._set_env("SLACK_WEBHOOK_URL", urls["webhook"] + "/services/slack")

        events_dir = self.workdir / "events"
        events_dir.mkdir(parents=True, exist_ok=True)
        write_events(self.data, events_dir)
        self._set_env("CDP_EVENTS_DIR", str(events_dir))
        self._set_env("CDP_APP_DB_URL", write_app_sqlite(self.data, self.workdir / "app.sqlite"))
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            with contextlib.suppress(Exception):
                server.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def __enter__(self) -> DemoStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def demo_stack(
    people: int = 2000, seed: int = 42, workdir: Path | None = None, fault_rate: float = 0.0
) -> Iterator[DemoStack]:
    data = generate(people, seed=seed)
    workdir = workdir or settings.data_dir() / "demo"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    with DemoStack(data=data, workdir=workdir, fault_rate=fault_rate) as stack:
        yield stack


def summarize(db_path: Path) -> dict[str, object]:
    """What came out of a run, read from the warehouse (read-only)."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:

        def scalar(sql: str) -> object:
            try:
                return con.execute(sql).fetchone()[0]
            except duckdb.Error:
                return None

        def rows(sql: str) -> list[tuple]:
            try:
                return con.execute(sql).fetchall()
            except duckdb.Error:
                return []

        return {
            "raw_records": rows(
                "select schema_name || '.' || table_name, estimated_size from duckdb_tables() "
                "where schema_name like 'raw_%' order by 1"
            ),
            "quarantined": scalar("select count(*) from ops.quarantine"),
            "customers": scalar("select count(*) from marts.customers"),
            "identifiers": scalar("select count(*) from marts.customer_identifiers"),
            "segments": rows(
                "select segment, count(*) from marts.segment_memberships group by 1 order by 1"
            ),
            "syncs": rows(
                "select sync_name, status, rows_added, rows_changed, rows_removed, rows_failed "
                "from ops.sync_runs qualify row_number() over "
                "(partition by sync_name order by started_at desc) = 1 order by 1"
            ),
        }
    finally:
        con.close()


def _email_of(db_path: Path, customer_id: str) -> str | None:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        row = con.execute(
            "select email from marts.customers where customer_id = ?", [customer_id]
        ).fetchone()
        return row[0] if row else None
    finally:
        con.close()


def print_summary(data: DemoData, summary: dict[str, object], db_path: Path, took: float) -> None:
    people = data.people.height
    anonymous = data.tables["events.events"]["_person_id"].max() - people
    print(f"\ncomposable-cdp demo: done in {took:.1f}s")
    print(f"  people generated      {people} known + {anonymous} anonymous-only visitors")
    print(f"  source records        {data.n_records} across {len(data.tables)} streams")
    for table, count in summary["raw_records"]:
        print(f"    {table:<32} {count}")
    print(f"  quarantined records   {summary['quarantined']}")
    print(f"  customers resolved    {summary['customers']} ({summary['identifiers']} identifiers)")
    print("  segments")
    for segment, count in summary["segments"]:
        print(f"    {segment:<32} {count} members")
    print("  syncs (last run)")
    for name, status, added, changed, removed, failed in summary["syncs"]:
        print(f"    {name:<32} {status}: +{added} ~{changed} -{removed} failed={failed}")
    print(f"  warehouse             {db_path}")
    print("  open the UI           make ui  (then http://127.0.0.1:3000)")


def run_demo(
    people: int = 2000,
    seed: int = 42,
    fault_rate: float = 0.0,
    keep_serving: bool = False,
    verbose: bool = False,
) -> int:
    from orchestration.runner import run_all

    settings.export_env()
    db_path = settings.duckdb_path()
    # the fakes start empty, so the warehouse must too: otherwise the syncs' remembered state
    # would say every row was already sent to destinations that have never seen it
    # (and the trigger log, whose per-customer rate limit would silence a rerun's alert)
    from orchestration.serve import config as serve_config

    for stale in (db_path, db_path.with_name(db_path.name + ".wal")):
        stale.unlink(missing_ok=True)
    for folder in (serve_config.snapshot_dir(), serve_config.firings_dir()):
        shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    with demo_stack(people=people, seed=seed, fault_rate=fault_rate) as stack:
        print(f"fake APIs up: {', '.join(f'{k}={v.url}' for k, v in stack.servers.items())}")
        print(f"generated {people} people; ingest -> dbt build -> syncs through Dagster ...")
        result = run_all(log_level="INFO" if verbose else "WARNING")
        if not result.success:
            print(f"the run failed: {getattr(result, 'failure', '')}")
            return 1
        summary = summarize(db_path)
        print_summary(stack.data, summary, db_path, time.perf_counter() - started)
        # the real-time path: pricing-page visits through the collector, to the Slack receiver
        from orchestration.serve.demo import run_pricing_demo

        pricing = run_pricing_demo(db_path, stack.workdir)
        print(pricing.describe())
        example = _email_of(db_path, pricing.high_value["customer_id"])
        if example:
            print(f"  look them up          .venv/bin/cdp profile {example}")
        if not pricing.ok:
            print("the pricing-page trigger did not fire as expected")
            return 1
        if keep_serving:
            print("fake APIs keep serving; Ctrl-C to stop")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    return 0
