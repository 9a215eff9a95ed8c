"""Sync declarations: parsed from exposure YAML, refused with a message naming what is wrong."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from reverse_etl.config import SyncConfig, SyncConfigError, get_sync, load_syncs
from reverse_etl.http import RateLimiter

EXPOSURE = """
version: 2
exposures:
  - name: crm_vips
    type: application
    owner: {name: Growth, email: growth@example.com}
    depends_on: [ref('sync_hubspot__vips')]
    meta:
      sync:
        destination: hubspot
        mode: mirror
        identity_key: email
        fields: {email: email, firstname: first_name}
        schedule: "0 * * * *"
        batch_size: 50
        rate_limit: {requests: 10, per_seconds: 1}
        options: {list_name: VIPs}
  - name: not_a_sync
    type: dashboard
    owner: {email: bi@example.com}
    depends_on: [ref('customers')]
"""


def _project(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "models" / "activation"
    folder.mkdir(parents=True)
    (folder / "_activation__exposures.yml").write_text(textwrap.dedent(text))
    return tmp_path


def test_exposures_become_sync_configs(tmp_path):
    project = _project(tmp_path, EXPOSURE)
    (sync,) = load_syncs(project)
    assert sync == SyncConfig(
        name="crm_vips",
        model="activation.sync_hubspot__vips",
        destination="hubspot",
        mode="mirror",
        identity_key="email",
        fields={"email": "email", "firstname": "first_name"},
        schedule="0 * * * *",
        batch_size=50,
        rate_limit=(10, 1.0),
        options={"list_name": "VIPs"},
        owner="growth@example.com",
    )
    assert get_sync("crm_vips", project) == sync
    with pytest.raises(SyncConfigError, match="no sync named 'nope'.*crm_vips"):
        get_sync("nope", project)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mode": "replace"}, "mode 'replace' is not one of"),
        ({"identity_key": None}, "identity_key"),
        ({"fields": {}}, "fields"),
        ({"fields": {"email": "email; drop table x"}}, "is not a column name"),
        ({"destination": "mailchimp"}, "declare a consent purpose"),
        ({"batch_size": 0}, "batch_size"),
        ({"rate_limit": {"requests": 5}}, "rate_limit"),
    ],
)
def test_malformed_declarations_are_refused_with_the_reason(change, message):
    meta = {
        "destination": "hubspot",
        "mode": "upsert",
        "identity_key": "email",
        "fields": {"email": "email"},
        "model": "activation.sync_hubspot__x",
    }
    meta.update(change)
    with pytest.raises(SyncConfigError, match=message) as info:
        SyncConfig.from_meta("broken", meta)
    assert "sync 'broken'" in str(info.value)


def test_a_sync_declared_twice_is_refused(tmp_path):
    doubled = EXPOSURE + EXPOSURE.split("exposures:\n", 1)[1]
    with pytest.raises(SyncConfigError, match="declared twice: crm_vips"):
        load_syncs(_project(tmp_path, doubled))


def test_rate_limiter_never_exceeds_its_window():
    limiter = RateLimiter(5, 0.2, margin=0.0)
    stamps = []
    for _ in range(16):
        slot = limiter.acquire()
        stamps.append(time.monotonic())
        limiter.release(slot)
    for i in range(len(stamps) - 5):
        assert stamps[i + 5] - stamps[i] >= 0.2 - 1e-3
    assert stamps[-1] - stamps[0] < 0.2 * 3 + 0.15  # and it does not wait needlessly
