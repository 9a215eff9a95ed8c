"""Every source, registered in one place: the CLI, the loader and Dagster all read this."""

from __future__ import annotations

import logging

from connectors.app import AppConnector
from connectors.base import Connector
from connectors.events import EventsConnector
from connectors.files import FilesConnector
from connectors.hubspot import HubSpotConnector
from connectors.klaviyo import KlaviyoConnector
from connectors.mailchimp import MailchimpConnector
from connectors.stripe import StripeConnector
from connectors.zendesk import ZendeskConnector

log = logging.getLogger(__name__)

SOURCES: dict[str, type[Connector]] = {
    cls.name: cls
    for cls in (
        HubSpotConnector,
        StripeConnector,
        ZendeskConnector,
        EventsConnector,
        AppConnector,
        FilesConnector,
        MailchimpConnector,
        KlaviyoConnector,
    )
}


def streams() -> list[tuple[str, str]]:
    """Every (source, stream) pair; file streams come from their YAML configuration.

    A source whose declaration cannot be read (a broken files YAML) is left out with an error
    in the log rather than taking every other stream down with it.
    """
    pairs = []
    for source, cls in SOURCES.items():
        try:
            pairs += [(source, stream) for stream in cls.stream_specs()]
        except Exception as exc:  # noqa: BLE001
            log.error("the streams of %s cannot be listed: %s", source, exc)
    return pairs
