"""The privacy jobs run in Dagster against the configured warehouse and leave their audit rows."""

from __future__ import annotations

from dagster import Definitions

from connectors.loader import connect
from orchestration.demo.warehouse import load_raw
from orchestration.privacy import submit_deletion_request
from orchestration.privacy.dagster_defs import privacy_jobs, privacy_schedules


def test_jobs_and_schedules_load_in_definitions() -> None:
    defs = Definitions(jobs=privacy_jobs(), schedules=privacy_schedules())
    for job in ("deletion_requests_job", "retention_job"):
        assert defs.get_job_def(job).tags["cdp/warehouse"] == "writer"
    assert {s.name for s in privacy_schedules()} == {
        "deletion_requests_schedule",
        "retention_schedule",
    }


def test_jobs_run_in_process(cdp_env, small_demo, tmp_path) -> None:
    load_raw(cdp_env, small_demo, tables=["events.events", "zendesk.tickets"])
    request_id = submit_deletion_request("nobody@nowhere.example", cdp_env)
    request_file = tmp_path / "requests.txt"
    request_file.write_text("user_id:424242\n")

    defs = Definitions(jobs=privacy_jobs())
    result = defs.get_job_def("deletion_requests_job").execute_in_process(
        run_config={
            "ops": {
                "process_deletion_requests_op": {
                    "config": {"files": [str(request_file)], "destinations": False}
                }
            }
        }
    )
    assert result.success
    assert result.output_for_node("process_deletion_requests_op") == 2
    assert defs.get_job_def("retention_job").execute_in_process().success

    con = connect(cdp_env, read_only=True)
    statuses = con.execute(
        "select request_id = ?, status, identifier from ops.deletion_requests order by 1",
        [request_id],
    ).fetchall()
    assert statuses == [(False, "not_found", None), (True, "not_found", None)]
    retention = con.execute(
        "select count(*) from ops.privacy_audit where step = 'retention'"
    ).fetchone()[0]
    assert retention >= 1
    con.close()
    assert request_file.read_text() == ""
