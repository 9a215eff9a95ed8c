"""What leaves a step (metadata, failure messages, alerts) never carries a credential."""

from __future__ import annotations

import pytest
from dagster import Failure, build_asset_context

from orchestration.defs.secrets import redact, settle


def test_credentials_from_the_environment_are_blanked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLAVIYO_API_KEY", "pk_live_abcdef123")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.example/services/T1/B2/xyz789")
    monkeypatch.setenv("CDP_WRITE_KEYS", "writekey-one,writekey-two")
    monkeypatch.setenv("CDP_EVENTS_DIR", "/var/data/events")  # not a credential
    text = (
        "401 for pk_live_abcdef123 posting to https://hooks.slack.example/services/T1/B2/xyz789 "
        "with writekey-two; files in /var/data/events"
    )
    out = redact(text)
    for secret in ("pk_live_abcdef123", "xyz789", "writekey-two"):
        assert secret not in out
    assert "/var/data/events" in out and out.count("***") == 3


def test_a_failed_step_fails_with_a_redacted_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_supersecret42")
    context = build_asset_context()
    metadata: dict = {"rows_loaded": 0}
    with pytest.raises(Failure) as failed:
        settle(context, "stripe.customers", "failed", "bad key sk_test_supersecret42", metadata)
    assert "sk_test_supersecret42" not in failed.value.description
    assert metadata["message"] == "bad key ***"
    ok = settle(context, "stripe.customers", "skipped", "STRIPE_API_KEY not set", {})
    assert ok == {"message": "STRIPE_API_KEY not set"}
