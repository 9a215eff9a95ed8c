"""The real Dagster webserver and daemon, as ``cdp ui`` starts them: the asset graph over
GraphQL, runs launched through GraphQL and the run queue, and the UI in a headless browser."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from connectors.registry import streams
from orchestration.defs.dbt import TRANSLATOR, manifest
from orchestration.defs.syncs import declared_syncs, model_key, sync_key
from orchestration.ui import DagsterUi
from tests.conftest import AS_OF, REPO_ROOT
from tests.orchestration.conftest import FILE_STREAMS, free_port, write_file_sources

CHROMIUM = "/usr/bin/chromium"
ASSET_NODES = (
    "{ assetNodes { assetKey { path } groupName isMaterializable dependencyKeys { path } } }"
)
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
RUN = "query R($id: ID!) { runOrError(runId: $id) { ... on Run { status startTime endTime } } }"
DONE = {"SUCCESS", "FAILURE", "CANCELED"}


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    from orchestration.demo.generator import generate

    tmp = tmp_path_factory.mktemp("ui")
    env = write_file_sources(generate(300, seed=11, as_of=AS_OF), tmp)
    env.update(CDP_DUCKDB_PATH=str(tmp / "cdp.duckdb"), CDP_PROJECT_ROOT=str(REPO_ROOT))
    # the runs here are the ones the tests launch: the daemon's schedule and sensor stay off
    quiet = tmp / "orchestration.yml"
    quiet.write_text(
        "schedules: {ingest_and_build: {status: STOPPED}}\n"
        "sensors: {event_files: {status: STOPPED}, run_failure_alert: {status: STOPPED}}\n"
    )
    env["CDP_ORCHESTRATION_CONFIG"] = str(quiet)
    server = DagsterUi(port=free_port(), home=tmp / "dagster_home", env=env, log_dir=tmp / "logs")
    with server:
        server.wait_ready(timeout_s=180)
        yield server


def gql(ui: DagsterUi, query: str, **variables) -> dict:
    response = requests.post(
        f"{ui.url}/graphql", json={"query": query, "variables": variables}, timeout=60
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def _path(key) -> str:
    """``a/b`` for an AssetKey or a GraphQL ``{"path": [...]}``."""
    return "/".join(key["path"] if isinstance(key, dict) else key.path)


def test_graphql_asset_graph_has_every_stream_model_and_sync(ui: DagsterUi) -> None:
    nodes = {_path(n["assetKey"]): n for n in gql(ui, ASSET_NODES)["assetNodes"]}
    deps = {k: {_path(d) for d in n["dependencyKeys"]} for k, n in nodes.items()}
    for source, stream in streams():
        key = f"raw_{source}/{stream}"
        assert nodes[key]["isMaterializable"] and nodes[key]["groupName"] == "ingest"
    for node in manifest()["nodes"].values():
        if node["resource_type"] != "model":
            continue
        key = _path(TRANSLATOR.get_asset_key(node))
        assert key in nodes, key
        for parent_id in node["depends_on"]["nodes"]:
            parent = manifest()["nodes"].get(parent_id) or manifest()["sources"][parent_id]
            assert _path(TRANSLATOR.get_asset_key(parent)) in deps[key], (key, parent_id)
    for sync in declared_syncs():
        assert _path(model_key(sync.model)) in deps[_path(sync_key(sync.name))]
    groups = {n["groupName"] for n in nodes.values() if n["isMaterializable"]}
    assert {"ingest", "staging", "profiles", "segments"} <= groups


def _launch(ui: DagsterUi, keys: list[str]) -> str:
    params = {
        "selector": {
            "repositoryLocationName": "orchestration.definitions",
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": k.split("/")} for k in keys],
        },
        "executionMetadata": {"tags": [{"key": "cdp/warehouse", "value": "writer"}]},
    }
    answer = gql(ui, LAUNCH, params=params)["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    return answer["run"]["runId"]


def _wait(ui: DagsterUi, run_ids: list[str], timeout_s: float = 240) -> dict[str, dict]:
    deadline = time.monotonic() + timeout_s
    runs: dict[str, dict] = {}
    while time.monotonic() < deadline:
        runs = {r: gql(ui, RUN, id=r)["runOrError"] for r in run_ids}
        if all(run["status"] in DONE for run in runs.values()):
            return runs
        time.sleep(1)
    raise AssertionError(f"runs did not finish in {timeout_s}s: {runs}")


def test_two_runs_launched_together_through_graphql_queue_and_succeed(ui: DagsterUi) -> None:
    first, second = _launch(ui, FILE_STREAMS), _launch(ui, FILE_STREAMS)
    runs = _wait(ui, [first, second])
    assert [runs[first]["status"], runs[second]["status"]] == ["SUCCESS", "SUCCESS"], runs
    # the writer tag lets one run at a time: the second started after the first ended
    a, b = sorted(runs.values(), key=lambda r: r["startTime"])
    assert a["endTime"] <= b["startTime"]


def test_browser_shows_the_asset_graph(ui: DagsterUi) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}: `apt-get install chromium` (as .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    artifacts = REPO_ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    lineage = f"{ui.url}/assets/staging/stg_app__users?view=lineage"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{ui.url}/asset-groups", wait_until="networkidle", timeout=90_000)
            skip = page.get_by_role("button", name="Skip")  # the first-visit newsletter dialog
            if skip.count():
                skip.click()
            for group in ("ingest", "staging", "profiles", "segments", "activation"):
                page.get_by_text(group, exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(artifacts / "dagster-lineage-groups.png"))
            # an asset's lineage: the staging model between its connector stream and the marts
            page.goto(lineage, wait_until="networkidle", timeout=90_000)
            for name in ("stg_app__users", "users"):
                page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(artifacts / "dagster-asset-lineage.png"))
        finally:
            browser.close()
    assert (artifacts / "dagster-asset-lineage.png").stat().st_size > 10_000
