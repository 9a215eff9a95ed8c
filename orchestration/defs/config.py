"""The orchestration settings: ``orchestration/orchestration.yml``, overridable per deployment.

Schedules, sensor defaults and identity-health thresholds are declarative things an operator
tunes, so they live in YAML, not code. ``CDP_ORCHESTRATION_CONFIG`` names a file whose keys
override the shipped ones (deep merge), so a deployment only writes what it changes.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "orchestration.yml"


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: the orchestration config must be a mapping")
    return doc


@cache
def _load(override: str | None) -> dict[str, Any]:
    config = _read(DEFAULT_CONFIG)
    if override:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"CDP_ORCHESTRATION_CONFIG points at a missing file: {path}")
        config = _merge(config, _read(path))
    return config


def load_config() -> dict[str, Any]:
    """The effective configuration (cached per override path; read at definitions load)."""
    return _load(os.environ.get("CDP_ORCHESTRATION_CONFIG") or None)


def section(*keys: str) -> dict[str, Any]:
    node: Any = load_config()
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def writer_pool() -> str:
    return str(load_config().get("writer_pool") or "duckdb_writer")
