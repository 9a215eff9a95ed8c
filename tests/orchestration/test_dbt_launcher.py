"""cdp-dbt: the dbt command line the project runs, with Python's garbage collector tuned."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from orchestration import dbt_server
from orchestration.dbt_cli import dbt_executable
from orchestration.dbt_launcher import GC_THRESHOLD


def test_the_project_runs_dbt_through_cdp_dbt() -> None:
    assert Path(dbt_executable()).name == "cdp-dbt"


def test_cdp_dbt_is_dbt_with_the_collector_tuned() -> None:
    # dbt's own version report, through the launcher
    proc = subprocess.run([dbt_executable(), "--version"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "installed: 1.11." in proc.stdout
    # frozen objects are released before exit: no extension module reports leaks
    assert "leaked" not in proc.stderr
    probe = (
        "import gc, sys; from orchestration import dbt_launcher as l; "
        "sys.argv = ['cdp-dbt', '--version']; "
        "import dbt.cli.main as m; m.cli = lambda: print(gc.get_threshold()[0]); l.main()"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, dbt_server.ENV_SWITCH: "0"},  # in this process, not a server's child
    )
    assert out.stdout.strip() == str(GC_THRESHOLD), out.stderr
