"""The warm dbt server behind cdp-dbt (orchestration/dbt_server.py): real server, real dbt, real
signals, on a two-file dbt project of its own."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from orchestration import dbt_server
from orchestration.dbt_cli import dbt_executable

pytestmark = pytest.mark.skipif(
    not dbt_server.enabled(), reason="the dbt server runs on Linux with CDP_DBT_SERVER on"
)

SLOW_SQL = "select sum(hash(range)) as s from range(100000000000)"


@pytest.fixture
def server_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A server folder of this test's own, every server in it stopped afterwards."""
    folder = tmp_path / "srv"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv(dbt_server.ENV_DIR, str(folder))
    monkeypatch.setenv(dbt_server.ENV_IDLE, "60")
    monkeypatch.delenv(dbt_server.ENV_SWITCH, raising=False)
    yield folder
    for sock in folder.glob("*.sock"):
        dbt_server.stop(sock)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A dbt project with a DuckDB profile, a macro that logs an environment variable and a table
    model whose query would take hours."""
    folder = tmp_path / "proj"
    (folder / "macros").mkdir(parents=True)
    (folder / "models").mkdir()
    (folder / "dbt_project.yml").write_text(
        "name: probe\nversion: '1.0'\nconfig-version: 2\nprofile: probe\n"
        "macro-paths: [macros]\nmodel-paths: [models]\nmodels: {probe: {+materialized: table}}\n"
    )
    (folder / "models" / "slow.sql").write_text(SLOW_SQL)
    (folder / "profiles.yml").write_text(
        textwrap.dedent(
            f"""\
            probe:
              target: dev
              outputs:
                dev:
                  type: duckdb
                  path: "{tmp_path / "probe.duckdb"}"
            """
        )
    )
    (folder / "macros" / "probe.sql").write_text(
        textwrap.dedent(
            """\
            {% macro probe() %}
              {{ log("probe=" ~ env_var("CDP_PROBE"), info=True) }}
            {% endmacro %}
            """
        )
    )
    return folder


def cdp_dbt(project: Path, *args: str, env: dict | None = None, cwd: Path | None = None):
    """``cdp-dbt <args>`` on ``project``, named relative to ``cwd`` when given (so a wrong working
    folder fails the command)."""
    named = project.relative_to(cwd) if cwd else project
    cmd = [dbt_executable(), *args, "--project-dir", str(named), "--profiles-dir", str(named)]
    env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or project, env=env)


def wait_until(check, timeout: float = 90.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def warm_server(server_dir: Path) -> Path:
    dbt_server.start_in_background()
    path = dbt_server.socket_path()
    wait_until(path.exists, what="the server's socket")
    return path


def served(server_dir: Path, sub_command: str) -> int:
    log = (server_dir / "server.log").read_text()
    return sum(1 for line in log.splitlines() if line.endswith(f": dbt {sub_command}"))


def test_commands_run_on_the_server_each_with_its_own_environment(server_dir, project):
    # cold: no server yet; the command runs in its own process and starts one
    cold = cdp_dbt(project, "run-operation", "probe", env={"CDP_PROBE": "cold-1"})
    assert cold.returncode == 0, cold.stdout + cold.stderr
    assert "probe=cold-1" in cold.stdout
    path = wait_until(lambda: dbt_server.socket_path().exists(), what="the started server")
    assert path and served(server_dir, "run-operation") == 0

    secret = "s3cr3t-value-never-logged"
    first = cdp_dbt(
        project, "run-operation", "probe", env={"CDP_PROBE": "warm-a", "CDP_SECRET": secret}
    )
    second = cdp_dbt(
        project, "run-operation", "probe", env={"CDP_PROBE": "warm-b"}, cwd=project.parent
    )
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "probe=warm-a" in first.stdout and "warm-b" not in first.stdout
    assert "probe=warm-b" in second.stdout and "warm-a" not in second.stdout
    # no folders named: dbt finds the project and the profile in the client's working folder
    third = subprocess.run(
        [dbt_executable(), "run-operation", "probe"],
        capture_output=True,
        text=True,
        cwd=project,
        env={**os.environ, "CDP_PROBE": "warm-c"},
    )
    assert third.returncode == 0 and "probe=warm-c" in third.stdout, third.stdout
    # all ran in children of the server, which logged no part of their environment
    assert served(server_dir, "run-operation") == 3
    log = (server_dir / "server.log").read_text()
    assert secret not in log and "warm-a" not in log


def test_exit_codes_and_errors_are_dbts_own(server_dir, project, monkeypatch):
    warm_server(server_dir)
    commands = [("no-such-command",), ("run-operation", "no_such_macro")]
    commands.append(("run-operation", "probe"))
    env = {"CDP_PROBE": "x"}
    warm = [cdp_dbt(project, *command, env=env) for command in commands]
    monkeypatch.setenv(dbt_server.ENV_SWITCH, "0")
    cold = [cdp_dbt(project, *command, env=env) for command in commands]
    assert [p.returncode for p in warm] == [p.returncode for p in cold] == [2, 2, 0]
    assert "No such command 'no-such-command'" in warm[0].stderr
    assert warm[0].stderr == cold[0].stderr
    assert "no_such_macro" in warm[1].stdout and "no_such_macro" in cold[1].stdout
    assert served(server_dir, "no-such-command") == 1
    assert served(server_dir, "run-operation") == 2


def test_an_interrupt_reaches_the_dbt_command(server_dir, project):
    # what Dagster does to cancel a run: SIGINT to the dbt process, which cancels its queries
    warm_server(server_dir)
    cmd = [dbt_executable(), "run", "--project-dir", str(project)]
    client = subprocess.Popen(
        [*cmd, "--profiles-dir", str(project)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=project,
    )
    wait_until(lambda: served(server_dir, "run") == 1, what="the child to start")
    time.sleep(5)  # dbt loads the project and starts the query
    client.send_signal(signal.SIGINT)
    try:
        out, _ = client.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        client.kill()
        pytest.fail("the interrupted command did not stop")
    assert client.returncode == 2, out  # what dbt itself exits with when interrupted
    assert "KeyboardInterrupt" in out or "cancel" in out.lower(), out
    assert re.search(r"child \d+: exit 2", (server_dir / "server.log").read_text())


def test_a_killed_client_takes_its_command_with_it(server_dir, project):
    warm_server(server_dir)
    client = subprocess.Popen(
        [dbt_executable(), "run", "--project-dir", str(project), "--profiles-dir", str(project)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=project,
    )
    wait_until(lambda: served(server_dir, "run") == 1, what="the child to start")
    time.sleep(5)
    client.kill()
    client.wait()
    # the orphaned child notices its client is gone, cancels and exits
    wait_until(
        lambda: re.search(r"child \d+: (exit|signal) ", (server_dir / "server.log").read_text()),
        timeout=60,
        what="the orphaned child to exit",
    )


def test_off_switch_and_private_folder(server_dir, project, monkeypatch, tmp_path):
    monkeypatch.setenv(dbt_server.ENV_SWITCH, "0")
    done = cdp_dbt(project, "run-operation", "probe", env={"CDP_PROBE": "off"})
    assert done.returncode == 0 and "probe=off" in done.stdout
    time.sleep(1)
    assert not list(server_dir.glob("*.sock")) and not (server_dir / "server.log").exists()
    # a folder others can open is refused: the environment goes through its socket
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(PermissionError):
        dbt_server._private_dir(shared)


def test_the_socket_name_follows_the_installation(server_dir, monkeypatch):
    before = dbt_server.socket_path()
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    assert dbt_server.socket_path() != before
    assert dbt_server.socket_path().parent == server_dir


def test_no_command_goes_to_a_socket_in_a_folder_others_can_open(tmp_path, monkeypatch):
    # someone else's (or a world-readable) folder with a socket at the expected name gets nothing
    import socket

    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o755)
    monkeypatch.setenv(dbt_server.ENV_DIR, str(folder))
    trap = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    trap.bind(str(dbt_server.socket_path()))
    trap.listen(1)
    trap.settimeout(0.5)
    try:
        assert dbt_server.run_on_server(["--version"]) is None
        with pytest.raises(TimeoutError):
            trap.accept()
        # the same socket in a private folder would be used
        folder.chmod(0o700)
        assert dbt_server._trusted(dbt_server.socket_path())
    finally:
        trap.close()
