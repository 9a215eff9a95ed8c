"""The shipped sync declarations, end to end: dbt build of generated data, then every sync.

The activation models and exposures under dbt_project/models/activation are built by dbt from
the demo generator's raw tables, then all declared syncs run against the vendor fakes with 10%
injected faults. Each destination must hold exactly the model's sendable rows (consented where
the sync declares a purpose), and a second run must send nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from orchestration.demo.fakes.hubspot_write import hubspot_fake_class
from orchestration.demo.fakes.klaviyo import KlaviyoFake
from orchestration.demo.fakes.mailchimp import MailchimpFake
from orchestration.demo.fakes.webhook import WebhookReceiver
from orchestration.demo.warehouse import load_raw
from reverse_etl.config import load_syncs
from reverse_etl.destinations.base import as_text
from reverse_etl.engine import run_syncs
from reverse_etl.state import connect
from tests.conftest import AS_OF, REPO_ROOT, run_dbt

SECRET = "demo-syncs-secret"


@pytest.fixture(scope="module")
def built(tmp_path_factory, small_demo) -> Path:
    db_path = tmp_path_factory.mktemp("demo_syncs") / "cdp.duckdb"
    load_raw(db_path, small_demo)
    # the models only (the project's own data tests run in tests/test_dbt_project.py)
    run_dbt(
        db_path,
        "build",
        "--select",
        "+path:models/activation",
        "--exclude-resource-type",
        "test",
        "--exclude-resource-type",
        "unit_test",
        "--vars",
        json.dumps({"cdp_as_of": AS_OF.strftime("%Y-%m-%d")}),
    )
    return db_path


def test_every_sync_is_an_exposure_on_its_activation_model(built, tmp_path):
    syncs = load_syncs(REPO_ROOT / "dbt_project")
    assert {s.destination for s in syncs} >= {"hubspot", "mailchimp", "webhook"}
    manifest = json.loads((built.parent / "dbt_target" / "manifest.json").read_text())
    exposures = {e["name"]: e for e in manifest["exposures"].values()}
    for sync in syncs:
        exposure = exposures[sync.name]
        assert exposure["type"] == "application" and exposure["owner"]["email"]
        assert exposure["depends_on"]["nodes"] == [f"model.composable_cdp.{sync.model_name}"]
        assert sync.model_name.startswith(f"sync_{sync.destination}__")
    # a deployment with only dbt artifacts reads the same syncs from the manifest
    (tmp_path / "target").mkdir()
    shutil.copy(built.parent / "dbt_target" / "manifest.json", tmp_path / "target")
    assert load_syncs(tmp_path) == syncs


def _rows(db: Path, sync) -> dict[str, dict[str, str]]:
    """What the destination must hold: model rows passing the consent gate, mapped fields."""
    con = connect(db, read_only=True)
    try:
        gate = f"and c.{sync.purpose}_consent" if sync.purpose else ""
        cols = ", ".join(f"m.{col} as {dest}" for dest, col in sync.fields.items())
        frame = con.sql(
            f"select m.{sync.identity_key} as _key, {cols} from {sync.model} m "
            f"join marts.customers c using (customer_id) where true {gate}"
        ).pl()
    finally:
        con.close()
    return {
        str(r.pop("_key")).lower(): {k: as_text(v) for k, v in r.items()} for r in frame.to_dicts()
    }


def test_declared_syncs_deliver_exactly_the_sendable_rows(built, tmp_path, monkeypatch):
    db = tmp_path / "cdp.duckdb"
    shutil.copy(built, db)
    syncs = {s.name: s for s in load_syncs(REPO_ROOT / "dbt_project")}
    faults = {"fault_rate": 0.1, "seed": 7}
    servers = {
        "hubspot": hubspot_fake_class()(token="hs-demo", **faults),
        "mailchimp": MailchimpFake(token="mc-demo-us1", **faults),
        "klaviyo": KlaviyoFake(token="pk_demo", **faults),
        "webhook": WebhookReceiver(secret=SECRET, **faults),
    }
    env = {
        "HUBSPOT_ACCESS_TOKEN": "hs-demo",
        "MAILCHIMP_API_KEY": "mc-demo-us1",
        "KLAVIYO_API_KEY": "pk_demo",
        "CDP_WEBHOOK_SECRET": SECRET,
    }
    for server in servers.values():
        server.start()
    try:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("HUBSPOT_BASE_URL", servers["hubspot"].url)
        monkeypatch.setenv("MAILCHIMP_BASE_URL", servers["mailchimp"].url)
        monkeypatch.setenv("KLAVIYO_BASE_URL", servers["klaviyo"].url)
        monkeypatch.setenv("CDP_WEBHOOK_URL", servers["webhook"].url + "/hooks/onboarding")

        results = run_syncs(db_path=db, project_dir=REPO_ROOT / "dbt_project")
        assert {r.name: r.status for r in results} == dict.fromkeys(syncs, "success"), [
            r.describe() for r in results
        ]
        for name, sync in syncs.items():
            want = _rows(db, sync)
            assert want, f"{name}: the demo data gives this sync nothing to send"
            assert _held(sync, servers[sync.destination]) == want, name

        again = run_syncs(db_path=db, project_dir=REPO_ROOT / "dbt_project")
        assert [(r.status, r.api_calls) for r in again] == [("success", 0)] * len(syncs)
    finally:
        for server in servers.values():
            server.stop()


def _held(sync, server) -> dict[str, dict[str, str]]:
    def pick(values: dict) -> dict[str, str]:
        return {dest: as_text(values.get(dest)) for dest in sync.fields}

    if sync.destination == "hubspot":
        return {e: pick(p) for e, p in server.list_contacts(sync.options["list_name"]).items()}
    if sync.destination == "mailchimp":
        tagged = server.tagged(sync.options["audience"], sync.options["tag"])
        return {e: pick({**m["merge_fields"], "email": e}) for e, m in tagged.items()}
    if sync.destination == "klaviyo":
        return {e: pick(p) for e, p in server.list_profiles(sync.options["list_name"]).items()}
    return {k.lower(): pick(v) for k, v in server.records["onboarding"].items()}
