"""Privacy and governance: forget a person everywhere, retention, suppression, audit, hashing.

Entry points: ``forget`` (``cdp forget``), ``process_deletion_requests`` (the scheduled job over
``ops.deletion_requests`` and request files), ``apply_retention`` (per-source retention from
``retention.yml``), ``audience_hash`` (SHA-256 of normalized emails and phones for ad exports).
"""

from orchestration.privacy.deletion_requests import (
    process_deletion_requests,
    submit_deletion_request,
)
from orchestration.privacy.forget import ForgetReceipt, forget
from orchestration.privacy.normalize import Identifier, audience_hash, hash_identifier
from orchestration.privacy.retention import apply_retention

__all__ = [
    "ForgetReceipt",
    "Identifier",
    "apply_retention",
    "audience_hash",
    "forget",
    "hash_identifier",
    "process_deletion_requests",
    "submit_deletion_request",
]
