"""Every source, registered in one place: the CLI, the loader and Dagster all read this."""

from __future__ import annotations

from connectors.app import AppConnector
from connectors.base import Connector
from connectors.events import EventsConnector
from connectors.files import FilesConnector
from connectors.hubspot import HubSpotConnector
from connectors.stripe import StripeConnector
from connectors.zendesk import ZendeskConnector

SOURCES: dict[str, type[Connector]] = {
    cls.name: cls
    for cls in (
        HubSpotConnector,
        StripeConnector,
        ZendeskConnector,
        EventsConnector,
        AppConnector,
        FilesConnector,
    )
}


def streams() -> list[tuple[str, str]]:
    """Every (source, stream) pair; file streams come from their YAML configuration."""
    return [(source, stream) for source, cls in SOURCES.items() for stream in cls.stream_specs()]
