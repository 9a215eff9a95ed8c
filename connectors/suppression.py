"""Identifier normalization and hashing shared with the privacy work.

The suppression list stores only ``sha256(normalized value)`` so that forgetting someone does
not keep their email in clear. Normalization must be identical wherever a hash is computed: in
Python (``hash_identifier``, used to fill the list) and in DuckDB SQL (``sql_hash``, used to drop
suppressed records before they are loaded). Tests check that both agree.
"""

from __future__ import annotations

import hashlib
import re

_NON_DIGITS = re.compile(r"[^0-9]")
_SPACE = " \t\n\v\f\r"  # ASCII white space, trimmed the same way in SQL
_SQL_SPACE = "' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)"


def normalize(id_type: str, value: object) -> str | None:
    """Email: trimmed, lower case. Phone: digits, ``1`` prefixed to 10-digit numbers. Else as is."""
    if value is None:
        return None
    text = str(value)
    if id_type == "email":
        text = text.strip(_SPACE).lower()
    elif id_type == "phone":
        text = _NON_DIGITS.sub("", text)
        if len(text) == 10:
            text = "1" + text
    return text or None


def hash_identifier(id_type: str, value: object) -> str | None:
    """The ``id_value_hash`` of ``ops.suppression_list``: sha256 hex of the normalized value."""
    normalized = normalize(id_type, value)
    return hashlib.sha256(normalized.encode()).hexdigest() if normalized is not None else None


def sql_normalize(id_type: str, expr: str) -> str:
    """``normalize`` as a DuckDB SQL expression over ``expr`` (a varchar expression)."""
    if id_type == "email":
        return f"nullif(lower(trim({expr}, {_SQL_SPACE})), '')"
    if id_type == "phone":
        digits = f"regexp_replace({expr}, '[^0-9]', '', 'g')"
        return f"nullif(case when length({digits}) = 10 then '1' || {digits} else {digits} end, '')"
    return f"nullif(cast({expr} as varchar), '')"


def sql_hash(id_type: str, expr: str) -> str:
    """``hash_identifier`` as a DuckDB SQL expression (sha256 hex of the normalized value)."""
    return f"sha256({sql_normalize(id_type, expr)})"
