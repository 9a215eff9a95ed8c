"""Sync declarations: dbt exposures whose ``meta.sync`` says where a model's rows go and how.

Analysts declare a sync next to the model it sends (``dbt_project/models/activation/*.yml``), so
the sync shows in dbt's lineage as an exposure and is reviewed like any other model change. This
module turns those declarations into ``SyncConfig`` objects and rejects malformed ones with a
message that names the exposure and the field, before anything is sent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reverse_etl import settings

MODES = ("upsert", "update", "insert", "mirror")
# destinations that reach people's inboxes or ad accounts must declare a consent purpose
CONSENT_REQUIRED = {"mailchimp", "klaviyo"}
DEFAULT_SCHEMA = "activation"
_REF = re.compile(r"""ref\(\s*['"]([^'"]+)['"]\s*\)""")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SyncConfigError(ValueError):
    """A sync declaration that cannot run as written."""


@dataclass(frozen=True)
class SyncConfig:
    name: str
    model: str  # relation "schema.table"
    destination: str
    mode: str
    identity_key: str
    fields: dict[str, str]  # destination field -> model column
    schedule: str | None = None
    purpose: str | None = None
    batch_size: int | None = None
    rate_limit: tuple[int, float] | None = None
    concurrency: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None
    description: str | None = None

    @property
    def model_name(self) -> str:
        return self.model.rsplit(".", 1)[-1]

    @classmethod
    def from_meta(
        cls,
        name: str,
        meta: dict[str, Any],
        model: str | None = None,
        owner: str | None = None,
        description: str | None = None,
    ) -> SyncConfig:
        """Validate one declaration; ``model`` comes from the exposure's ``depends_on``."""

        def fail(msg: str) -> SyncConfigError:
            return SyncConfigError(f"sync {name!r}: {msg}")

        if not isinstance(meta, dict):
            raise fail("meta.sync must be a mapping")
        model = meta.get("model") or model
        if not model:
            raise fail("no model: add depends_on: [ref('sync_<destination>__<object>')]")
        if "." not in model:
            model = f"{DEFAULT_SCHEMA}.{model}"
        if not all(_IDENT.match(part) for part in model.split(".")):
            raise fail(f"model {model!r} is not a schema.table name")
        destination = meta.get("destination")
        if not destination:
            raise fail("destination is required")
        mode = meta.get("mode", "upsert")
        if mode not in MODES:
            raise fail(f"mode {mode!r} is not one of {', '.join(MODES)}")
        key = meta.get("identity_key")
        if not key or not _IDENT.match(str(key)):
            raise fail("identity_key (a column of the model) is required")
        fields = meta.get("fields") or meta.get("field_mapping")
        if not isinstance(fields, dict) or not fields:
            raise fail("fields (destination field: model column) is required")
        for column in fields.values():
            if not isinstance(column, str) or not _IDENT.match(column):
                raise fail(f"field mapping value {column!r} is not a column name")
        purpose = meta.get("purpose") or meta.get("consent_purpose")
        if destination in CONSENT_REQUIRED and not purpose:
            raise fail(f"{destination} sends marketing: declare a consent purpose")
        if purpose and not _IDENT.match(purpose):
            raise fail(f"purpose {purpose!r} is not an identifier")
        batch_size = meta.get("batch_size")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise fail("batch_size must be a positive integer")
        concurrency = meta.get("concurrency")
        if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
            raise fail("concurrency must be a positive integer")
        rate_limit = meta.get("rate_limit")
        if rate_limit is not None:
            try:
                rate_limit = (int(rate_limit["requests"]), float(rate_limit["per_seconds"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise fail("rate_limit needs requests and per_seconds") from exc
        return cls(
            name=name,
            model=model,
            destination=str(destination),
            mode=mode,
            identity_key=str(key),
            fields={str(k): v for k, v in fields.items()},
            schedule=meta.get("schedule"),
            purpose=purpose,
            batch_size=batch_size,
            rate_limit=rate_limit,
            concurrency=concurrency,
            options=dict(meta.get("options") or {}),
            owner=owner,
            description=description,
        )


def _owner(raw: Any) -> str | None:
    if isinstance(raw, dict):
        return raw.get("email") or raw.get("name")
    return raw


def _from_yaml(folder: Path) -> list[SyncConfig]:
    syncs = []
    for path in sorted([*folder.rglob("*.yml"), *folder.rglob("*.yaml")]):
        doc = yaml.safe_load(path.read_text()) or {}
        for exposure in doc.get("exposures") or []:
            meta = (exposure.get("meta") or {}).get("sync") or (exposure.get("config") or {}).get(
                "meta", {}
            ).get("sync")
            if meta is None:
                continue
            refs = [
                m.group(1) for dep in exposure.get("depends_on") or [] if (m := _REF.search(dep))
            ]
            syncs.append(
                SyncConfig.from_meta(
                    exposure["name"],
                    meta,
                    model=refs[0] if refs else None,
                    owner=_owner(exposure.get("owner")),
                    description=exposure.get("description"),
                )
            )
    return syncs


def _from_manifest(path: Path) -> list[SyncConfig]:
    manifest = json.loads(path.read_text())
    nodes = manifest.get("nodes", {})
    syncs = []
    for exposure in manifest.get("exposures", {}).values():
        meta = (exposure.get("meta") or {}).get("sync") or (exposure.get("config") or {}).get(
            "meta", {}
        ).get("sync")
        if meta is None:
            continue
        model = None
        for node_id in exposure.get("depends_on", {}).get("nodes", []):
            node = nodes.get(node_id)
            if node and node.get("resource_type") == "model":
                model = f"{node['schema']}.{node.get('alias') or node['name']}"
                break
        syncs.append(
            SyncConfig.from_meta(
                exposure["name"],
                meta,
                model=model,
                owner=_owner(exposure.get("owner")),
                description=exposure.get("description"),
            )
        )
    return syncs


def load_syncs(project_dir: str | Path | None = None) -> list[SyncConfig]:
    """Every declared sync, from the activation YAML (the source of truth analysts edit).

    A deployment that ships only dbt artifacts has no YAML: then ``target/manifest.json`` is read.
    """
    project = Path(project_dir) if project_dir else settings.dbt_project_dir()
    folder = project / "models" / "activation"
    syncs = _from_yaml(folder) if folder.is_dir() else []
    manifest = project / "target" / "manifest.json"
    if not syncs and manifest.is_file():
        syncs = _from_manifest(manifest)
    names = [s.name for s in syncs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SyncConfigError(f"syncs declared twice: {', '.join(duplicates)}")
    return syncs


def get_sync(name: str, project_dir: str | Path | None = None) -> SyncConfig:
    syncs = {s.name: s for s in load_syncs(project_dir)}
    if name not in syncs:
        known = ", ".join(sorted(syncs)) or "none"
        raise SyncConfigError(f"no sync named {name!r} (declared: {known})")
    return syncs[name]
