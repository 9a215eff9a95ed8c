"""Destinations, one module each behind ``reverse_etl.destinations.base.Destination``.

Importing this package registers every destination in ``base.REGISTRY``.
"""

from reverse_etl.destinations import files, hubspot, klaviyo, mailchimp, webhook  # noqa: F401
