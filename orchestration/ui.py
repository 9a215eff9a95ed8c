"""``cdp ui``: the Dagster webserver and daemon on 127.0.0.1, with the project's instance.

Both processes get ``DAGSTER_HOME`` = the project-local ``.dagster_home`` (or the one the user
set), which holds the ``dagster.yaml`` the project ships: the run queue and the writer pool that
keep DuckDB writers apart. Without the daemon, schedules, sensors and the run queue would not
move, so the two start and stop together. They are stopped by PID: ``dagster dev`` and friends
ignore SIGINT when started in the background without job control.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from orchestration import settings

log = logging.getLogger(__name__)

SHIPPED_INSTANCE = settings.PACKAGE_ROOT / ".dagster_home" / "dagster.yaml"
DEFINITIONS_MODULE = "orchestration.definitions"


def _executable(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed in this environment: run `make install`")
    return found


def prepare_home(home: Path | None = None) -> Path:
    """The instance folder, holding the project's ``dagster.yaml`` (copied there if missing),
    with the writer pool's slot created."""
    home = (home or settings.dagster_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists() and SHIPPED_INSTANCE.exists() and target != SHIPPED_INSTANCE:
        shutil.copy2(SHIPPED_INSTANCE, target)
    from dagster import DagsterInstance

    from orchestration.runner import ensure_writer_pool

    with DagsterInstance.from_config(str(home)) as instance:
        ensure_writer_pool(instance)
    return home


class DagsterUi:
    """The webserver and the daemon as two child processes; a context manager stops both."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 3000,
        home: Path | None = None,
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.home = prepare_home(home)
        self.env = {**os.environ, **(env or {}), "DAGSTER_HOME": str(self.home)}
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = None
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            cmd,
            cwd=settings.project_root(),
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,  # its own process group: stopped together, by PID
        )
        log.info("started %s (pid %d)", name, self.processes[name].pid)

    def start(self) -> DagsterUi:
        # pinned for the children only: a test's own environment stays as it was
        self.env.setdefault("CDP_PROJECT_ROOT", str(settings.project_root()))
        self.env.setdefault("CDP_DUCKDB_PATH", str(settings.duckdb_path()))
        Path(self.env["CDP_DUCKDB_PATH"]).parent.mkdir(parents=True, exist_ok=True)
        workspace = ["-m", DEFINITIONS_MODULE, "-d", str(settings.project_root())]
        self._spawn(
            "webserver",
            [_executable("dagster-webserver"), "-h", self.host, "-p", str(self.port), *workspace],
        )
        self._spawn("daemon", [_executable("dagster-daemon"), "run", *workspace])
        return self

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until the webserver answers and has loaded the code location."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"dagster {name} exited with code {proc.returncode}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/server_info", timeout=2).ok:
                    return
            time.sleep(0.5)
        raise TimeoutError(f"the Dagster UI did not come up on {self.url} in {timeout_s:.0f}s")

    def stop(self, grace_s: float = 15.0) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                log.info("stopping %s (pid %d)", name, proc.pid)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def __enter__(self) -> DagsterUi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_ui(host: str = "127.0.0.1", port: int = 3000) -> int:
    """Serve the UI until Ctrl-C (exit 0) or until one of the two processes dies (its code)."""
    ui = DagsterUi(host=host, port=port).start()
    log.info("Dagster UI on %s (DAGSTER_HOME=%s); Ctrl-C stops it", ui.url, ui.home)
    exited: list[int] = []

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # `kill <pid>` stops the children too, like Ctrl-C

    signal.signal(signal.SIGTERM, _terminate)
    try:
        while not exited:
            exited = [p.returncode for p in ui.processes.values() if p.poll() is not None]
            time.sleep(1)
    except KeyboardInterrupt:
        log.info("stopping the Dagster UI")
    finally:
        ui.stop()
    return (exited[0] or 1) if exited else 0
