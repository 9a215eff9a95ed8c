"""Start a vendor fake filled from the demo data and point the connector's environment at it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest

from orchestration.demo.fakes.base import FakeServer
from orchestration.demo.fakes.hubspot import HubSpotFake
from orchestration.demo.fakes.klaviyo import KlaviyoFake
from orchestration.demo.fakes.mailchimp import MailchimpFake
from orchestration.demo.fakes.stripe import StripeFake
from orchestration.demo.fakes.zendesk import ZendeskFake
from orchestration.demo.generator import DemoData

TOKENS = {
    "hubspot": "pat-test-hubspot-0123",
    "stripe": "sk_test_0123456789",
    "zendesk": "zd-tok-99",
    "mailchimp": "mc-test-key-us1",
    "klaviyo": "pk_test_klaviyo",
}
TOKEN_VARS = {
    "hubspot": "HUBSPOT_ACCESS_TOKEN",
    "stripe": "STRIPE_API_KEY",
    "mailchimp": "MAILCHIMP_API_KEY",
    "klaviyo": "KLAVIYO_API_KEY",
}
FAKES = {
    "hubspot": HubSpotFake,
    "stripe": StripeFake,
    "zendesk": ZendeskFake,
    "mailchimp": MailchimpFake,
    "klaviyo": KlaviyoFake,
}
ZENDESK_EMAIL = "agent@example.com"


@contextlib.contextmanager
def serve(
    vendor: str, data: DemoData | None, monkeypatch: pytest.MonkeyPatch, **kwargs
) -> Iterator[FakeServer]:
    """A running fake (empty when ``data`` is None) with the env vars the connector reads."""
    if vendor == "zendesk":
        kwargs.update(email=ZENDESK_EMAIL, api_token=TOKENS["zendesk"])
        monkeypatch.setenv("ZENDESK_EMAIL", ZENDESK_EMAIL)
        monkeypatch.setenv("ZENDESK_API_TOKEN", TOKENS["zendesk"])
    else:
        kwargs.setdefault("token", TOKENS[vendor])
        monkeypatch.setenv(TOKEN_VARS[vendor], TOKENS[vendor])
    cls = FAKES[vendor]
    fake = cls.from_demo(data, **kwargs) if data is not None else cls(**kwargs)
    # FakeServer.start() polls for shutdown every 0.5 s; a short poll keeps teardown quick
    thread = threading.Thread(
        target=fake._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        monkeypatch.setenv(f"{vendor.upper()}_BASE_URL", fake.url)
        yield fake
    finally:
        fake.stop()
