"""Where connectors read their configuration: environment variables only, in this one module.

Secrets (tokens, keys) are read here and handed to the HTTP client; nothing else in the package
touches ``os.environ``, so a review of what is read from the environment starts and ends here.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_BASE_URLS = {
    "hubspot": "https://api.hubapi.com",
    "stripe": "https://api.stripe.com",
    "klaviyo": "https://a.klaviyo.com",
}


def project_root() -> Path:
    """``CDP_PROJECT_ROOT``, else the checkout this package lives in."""
    return Path(os.environ.get("CDP_PROJECT_ROOT") or PACKAGE_ROOT).resolve()


def duckdb_path() -> Path:
    """The warehouse file: ``CDP_DUCKDB_PATH``, else ``data/cdp.duckdb`` under the project root."""
    configured = os.environ.get("CDP_DUCKDB_PATH")
    return (Path(configured) if configured else project_root() / "data" / "cdp.duckdb").resolve()


def env(name: str) -> str | None:
    """An environment variable, with blank treated as absent (a common CI mistake)."""
    value = os.environ.get(name)
    return value.strip() if value and value.strip() else None


def base_url(vendor: str) -> str | None:
    """``<VENDOR>_BASE_URL``, else the vendor's public endpoint (Zendesk's is per tenant)."""
    url = env(f"{vendor.upper()}_BASE_URL") or DEFAULT_BASE_URLS.get(vendor)
    return url.rstrip("/") if url else None


def files_config_path() -> Path:
    """The YAML declaring file streams: ``CDP_FILES_CONFIG``, else ``connectors/files.yml``."""
    configured = env("CDP_FILES_CONFIG")
    return Path(configured) if configured else Path(__file__).resolve().parent / "files.yml"


def batch_rows() -> int:
    """Records per committed batch: enough to amortize a transaction, few enough to resume."""
    return int(env("CDP_INGEST_BATCH_ROWS") or 5000)


SECRET_VARS = (
    "HUBSPOT_ACCESS_TOKEN",
    "STRIPE_API_KEY",
    "ZENDESK_API_TOKEN",
    "MAILCHIMP_API_KEY",
    "KLAVIYO_API_KEY",
)


def mask_secrets(text: str) -> str:
    """``text`` with every configured secret (tokens, the app database password) masked.

    Connectors already keep secrets out of their messages; this is the net under messages that
    come from elsewhere (a driver's exception) before they reach logs, the warehouse or Dagster.
    """
    secrets = [env(name) for name in SECRET_VARS]
    url = env("CDP_APP_DB_URL") or ""
    if "@" in url and ":" in url.split("://", 1)[-1].split("@", 1)[0]:
        secrets.append(url.split("://", 1)[-1].split("@", 1)[0].split(":", 1)[1])
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
