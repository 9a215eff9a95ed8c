"""The cdp command exposes every command of the design."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from orchestration.cli import COMMANDS, build_parser

DESIGN_COMMANDS = {
    "demo",
    "run",
    "ingest",
    "build",
    "sync",
    "profile",
    "forget",
    "ui",
    "collect",
    "bench",
}


def test_parser_knows_every_design_command() -> None:
    assert set(COMMANDS) == DESIGN_COMMANDS
    args = build_parser().parse_args(["sync", "hubspot_high_value", "--dry-run"])
    assert args.names == ["hubspot_high_value"] and args.dry_run


def test_console_script_help_lists_commands() -> None:
    cdp = Path(sys.executable).parent / "cdp"
    out = subprocess.run([str(cdp), "--help"], capture_output=True, text=True, check=True).stdout
    for command in DESIGN_COMMANDS:
        assert command in out


def test_errors_are_one_line_without_traceback(tmp_path) -> None:
    import os

    cdp = Path(sys.executable).parent / "cdp"
    env = {**os.environ, "CDP_PROJECT_ROOT": str(tmp_path), "CDP_DUCKDB_PATH": ""}
    env.pop("CDP_DUCKDB_PATH")
    proc = subprocess.run(
        [str(cdp), "profile", "nobody@example.com"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("cdp profile: ")
    assert "Traceback" not in proc.stderr
