"""One harness per destination for the shared contract suite: its fake, env, sync and state.

``held(server)`` reads what the destination holds as ``{email: {field: text}}`` so every
destination is compared with the same expectation (``canonical(expected_members(...))``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestration.demo.fakes.base import FakeServer
from orchestration.demo.fakes.hubspot_write import HubSpotWriteMixin
from orchestration.demo.fakes.klaviyo import KlaviyoFake
from orchestration.demo.fakes.mailchimp import MailchimpFake
from orchestration.demo.fakes.webhook import WebhookReceiver
from reverse_etl.destinations.base import as_text
from reverse_etl.destinations.files import KEY, read_table

CANONICAL = ("email", "firstname", "lastname", "ltv")
WEBHOOK_SECRET = "contract-secret"
HUBSPOT_TOKEN = "hs-contract-token"
MAILCHIMP_KEY = "0123456789abcdef0123456789abcdef-us7"
HUBSPOT_LIST = "CDP contract list"
AUDIENCE, TAG = "Contract audience", "high value"
KLAVIYO_KEY = "pk_contract"
KLAVIYO_LIST = "CDP contract list"


class HubSpotTestFake(HubSpotWriteMixin, FakeServer):
    """The write routes on a bare FakeServer, independent of the read-side fake."""

    name = "hubspot"

    def __init__(self, **kwargs: Any) -> None:
        self.contacts = {}
        super().__init__(**kwargs)


def canonical(members: dict[str, dict]) -> dict[str, dict[str, str]]:
    return {
        k.strip().lower(): {f: as_text(v.get(f)) for f in CANONICAL} for k, v in members.items()
    }


@dataclass
class Harness:
    name: str
    meta: dict[str, Any]
    make_server: Callable[..., FakeServer | None]
    env: Callable[[FakeServer | None, Path], dict[str, str]]
    held: Callable[[FakeServer | None, Path], dict[str, dict[str, str]]]
    credential_env: str | None
    row_error_text: str | None  # the destination's words for a malformed email
    http: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _files_held(_server, tmp: Path) -> dict:
    path = tmp / "files_out" / "snapshot.parquet"
    if not path.exists():
        return {}
    rows = read_table(path).to_dicts()
    return canonical({r[KEY]: r for r in rows})


def _hubspot_held(server, _tmp) -> dict:
    return canonical(server.list_contacts(HUBSPOT_LIST))


def _mailchimp_held(server, _tmp) -> dict:
    tagged = server.tagged(AUDIENCE, TAG)
    return canonical(
        {
            e: {
                "email": m["email_address"],
                "firstname": m["merge_fields"].get("FNAME"),
                "lastname": m["merge_fields"].get("LNAME"),
                "ltv": m["merge_fields"].get("LTV"),
            }
            for e, m in tagged.items()
        }
    )


def _klaviyo_held(server, _tmp) -> dict:
    return canonical(
        {
            e: {
                "email": e,
                "firstname": p.get("first_name"),
                "lastname": p.get("last_name"),
                "ltv": p.get("ltv"),
            }
            for e, p in server.list_profiles(KLAVIYO_LIST).items()
        }
    )


HARNESSES = [
    Harness(
        "files",
        {"options": {"path": "files_out", "format": "parquet"}},
        lambda **kw: None,
        lambda _s, tmp: {"CDP_EXPORTS_DIR": str(tmp)},
        _files_held,
        None,
        None,
        http=False,
    ),
    Harness(
        "webhook",
        {},
        lambda **kw: WebhookReceiver(secret=WEBHOOK_SECRET, **kw),
        lambda s, _tmp: {
            "CDP_WEBHOOK_URL": f"{s.url}/hooks/contract",
            "CDP_WEBHOOK_SECRET": WEBHOOK_SECRET,
        },
        lambda s, _tmp: canonical(s.records.get("contract", {})),
        "CDP_WEBHOOK_URL",
        "invalid email address",
    ),
    Harness(
        "hubspot",
        {"options": {"list_name": HUBSPOT_LIST}},
        lambda **kw: HubSpotTestFake(token=HUBSPOT_TOKEN, **kw),
        lambda s, _tmp: {"HUBSPOT_BASE_URL": s.url, "HUBSPOT_ACCESS_TOKEN": HUBSPOT_TOKEN},
        _hubspot_held,
        "HUBSPOT_ACCESS_TOKEN",
        "INVALID_EMAIL",
    ),
    Harness(
        "mailchimp",
        {
            "fields": {
                "email": "email",
                "FNAME": "first_name",
                "LNAME": "last_name",
                "LTV": "lifetime_value",
            },
            "options": {"audience": AUDIENCE, "tag": TAG},
        },
        lambda **kw: MailchimpFake(token=MAILCHIMP_KEY, **kw),
        lambda s, _tmp: {"MAILCHIMP_BASE_URL": s.url, "MAILCHIMP_API_KEY": MAILCHIMP_KEY},
        _mailchimp_held,
        "MAILCHIMP_API_KEY",
        "looks fake or invalid",
    ),
    Harness(
        "klaviyo",
        {
            "fields": {
                "email": "email",
                "first_name": "first_name",
                "last_name": "last_name",
                "ltv": "lifetime_value",
            },
            "options": {"list_name": KLAVIYO_LIST},
        },
        lambda **kw: KlaviyoFake(token=KLAVIYO_KEY, **kw),
        lambda s, _tmp: {"KLAVIYO_BASE_URL": s.url, "KLAVIYO_API_KEY": KLAVIYO_KEY},
        _klaviyo_held,
        "KLAVIYO_API_KEY",
        "Invalid email address",
    ),
]


def harness_params() -> list:
    return [pytest.param(h, id=h.name) for h in HARNESSES]
