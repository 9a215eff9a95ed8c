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
