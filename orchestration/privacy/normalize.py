"""Identifier normalization for matching, and the hashes of audit rows and audience exports.

A suppression entry only stops a record if the connector hashes the record's value exactly as
the privacy job hashed the forgotten one, so suppression and audit hashes come from the one
implementation the loader uses (``connectors.suppression.hash_identifier``). Matching needs
more than hashing: emails are trimmed and lower-cased, phones become E.164 (10-digit numbers are
read as North American), other ids are trimmed. The SQL twin of ``normalize_phone``
(``PHONE_SQL_MACRO``) is what the warehouse scan uses; a test keeps the two in step.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from connectors.suppression import hash_identifier

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NON_DIGITS = re.compile(r"\D")
PHONE_LIKE_RE = re.compile(r"^\s*\+?[\d\s().-]{7,}\d\s*$")

# id types whose values are emails or phones; every other type is an opaque id
EMAIL_TYPES = frozenset({"email"})
PHONE_TYPES = frozenset({"phone"})


def normalize_email(value: str | None) -> str | None:
    """Trimmed, lower-cased; ``None`` when it is not an email at all."""
    if value is None:
        return None
    text = str(value).strip().lower()
    return text if EMAIL_RE.match(text) else None


def normalize_phone(value: str | int | None, default_country: str = "1") -> str | None:
    """E.164 (``+15550001234``); ``None`` when the digits cannot be a phone number.

    A leading ``+`` keeps its country code; otherwise 10 digits get ``default_country`` and 11
    digits starting with it are taken as already carrying it.
    """
    if value is None:
        return None
    text = str(value).strip()
    digits = _NON_DIGITS.sub("", text)
    if text.startswith("+"):
        return f"+{digits}" if 8 <= len(digits) <= 15 else None
    if len(digits) == 10:
        return f"+{default_country}{digits}"
    if len(digits) == 11 and digits.startswith(default_country):
        return f"+{digits}"
    return None


def normalize_id(value: str | int | None) -> str | None:
    """Opaque ids (user ids, anonymous ids, vendor record ids) compare as trimmed text."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def normalize(id_type: str, value: str | int | None) -> str | None:
    """The normalized value of an identifier of ``id_type``."""
    if id_type in EMAIL_TYPES:
        return normalize_email(value if value is None else str(value))
    if id_type in PHONE_TYPES:
        return normalize_phone(value)
    return normalize_id(value)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def audience_hash(id_type: str, value: str | int | None, *, phone_plus: bool = True) -> str | None:
    """What an advertising-audience export sends instead of an email or phone.

    Ad platforms match on SHA-256 of the normalized value: a trimmed lower-case email, an
    E.164 phone (Google Customer Match keeps the ``+``; platforms that want digits only take
    ``phone_plus=False``). Only emails and phones may be exported this way: anything else
    raises, so a mapping mistake cannot send an unhashed or meaningless value. A value that
    does not normalize gives ``None``: better no match than a hash of garbage.
    """
    if id_type in EMAIL_TYPES:
        normalized = normalize_email(value if value is None else str(value))
    elif id_type in PHONE_TYPES:
        phone = normalize_phone(value)
        normalized = phone if phone is None or phone_plus else phone.lstrip("+")
    else:
        raise ValueError(f"audience exports hash emails and phones only, not {id_type!r}")
    return sha256_hex(normalized) if normalized is not None else None


@dataclass(frozen=True, order=True)
class Identifier:
    """A typed, normalized identifier, e.g. ``Identifier("email", "ada@example.com")``."""

    id_type: str
    value: str

    @property
    def hash(self) -> str:
        """The suppression-list hash (``id_value_hash``), as the connectors compute it."""
        return hash_identifier(self.id_type, self.value) or sha256_hex(self.value)

    def redacted(self) -> str:
        """``type:sha256`` - the only form an identifier takes in logs and the audit."""
        return f"{self.id_type}:{self.hash}"

    @classmethod
    def of(cls, id_type: str, value: str | int | None) -> Identifier | None:
        normalized = normalize(id_type, value)
        return cls(id_type, normalized) if normalized is not None else None


def parse_identifier(text: str) -> list[Identifier]:
    """What a user typed after ``cdp forget``: ``type:value``, an email, a phone, or an id.

    An untyped value that is neither an email nor a phone may be any opaque id, so it is
    returned once per candidate type (``None`` type means "any id type") and resolution
    decides which one the identity graph knows.
    """
    raw = text.strip()
    if not raw:
        raise ValueError("an empty identifier cannot be forgotten")
    head, sep, tail = raw.partition(":")
    if sep and re.fullmatch(r"[a-z][a-z0-9_]*", head) and tail.strip():
        found = Identifier.of(head, tail)
        if found is None:
            raise ValueError(f"{head!r} value is not valid")
        return [found]
    if "@" in raw:
        found = Identifier.of("email", raw)
        if found is None:
            raise ValueError("that looks like an email but is not a valid one")
        return [found]
    candidates: list[Identifier] = []
    if PHONE_LIKE_RE.match(raw) and (phone := Identifier.of("phone", raw)):
        candidates.append(phone)
    candidates.append(Identifier("*", raw))
    return candidates


PHONE_SQL_MACRO = r"""
create or replace temp macro cdp_phone_e164(v) as (
    case
        when v is null then null
        when starts_with(trim(v), '+')
            and length(regexp_replace(v, '[^0-9]', '', 'g')) between 8 and 15
            then '+' || regexp_replace(v, '[^0-9]', '', 'g')
        when starts_with(trim(v), '+') then null
        when length(regexp_replace(v, '[^0-9]', '', 'g')) = 10
            then '+1' || regexp_replace(v, '[^0-9]', '', 'g')
        when length(regexp_replace(v, '[^0-9]', '', 'g')) = 11
            and starts_with(regexp_replace(v, '[^0-9]', '', 'g'), '1')
            then '+' || regexp_replace(v, '[^0-9]', '', 'g')
    end
)
"""
