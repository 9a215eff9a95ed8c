"""Keep secrets out of Dagster metadata, logs and alerts.

Connector and destination errors quote what the vendor said, and a vendor may echo a key back.
Anything that leaves the step (metadata, failure messages, webhook alerts) passes through
``redact``, which blanks the value of every environment variable that looks like a credential.
"""

from __future__ import annotations

import os
import re

_SECRET_NAME = re.compile(r"(TOKEN|KEY|SECRET|PASSWORD|WEBHOOK_URL|DB_URL|CREDENTIAL)", re.I)
MIN_SECRET_LEN = 6  # shorter values would blank ordinary words


def secret_values() -> list[str]:
    values = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and v}
    parts = {p for v in values for p in v.split(",") if len(p) >= MIN_SECRET_LEN}
    return sorted(values | parts, key=len, reverse=True)


def redact(text: str | None) -> str | None:
    if not text:
        return text
    for value in secret_values():
        if len(value) >= MIN_SECRET_LEN:
            text = text.replace(value, "***")
    return text


def settle(context, what: str, status: str, message: str | None, metadata: dict) -> dict:
    """Record a step's outcome: the redacted message joins the metadata; a failed status fails
    the step (and so alerts), a skipped one (no credentials) warns and still materializes, since
    the models downstream must build from what the other sources loaded."""
    from dagster import Failure

    message = redact(message)
    if message:
        metadata["message"] = message
    if status == "failed":
        raise Failure(description=f"{what} failed: {message}", metadata=metadata)
    if status == "skipped":
        context.log.warning(f"{what} skipped: {message}")
    return metadata


def step_failure_message(event) -> str:
    """The innermost error of a step failure (Dagster wraps the user's exception), redacted."""
    data = event.event_specific_data
    error = getattr(data, "error", None)
    if error is None:
        return redact(event.message) or "failed"
    while error.cause is not None:
        error = error.cause
    return redact(error.message.strip()) or "failed"
