"""Keep personal data out of quality samples, dead-letter messages and logs.

A sample names the row by its key and shows the failing column. Key values are kept (they
are surrogate ids, needed to find the row); every other value is masked when its column is
personal (emails, names, phones, addresses) or when the value looks like an email wherever
it appears. Nothing else of the row is copied into a sample.
Free text (an error message, a log line) goes through ``redact_text``: every email address,
and every value written after a personal column's name (``email=...``, ``'last_name': 'X'``),
is masked the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

#: Columns whose values identify a person; matched by name, in any table.
PII_COLUMNS = frozenset(
    {
        "email",
        "first_name",
        "last_name",
        "name",
        "full_name",
        "phone",
        "phone_number",
        "address",
        "street",
        "city",
        "postal_code",
        "zip",
        "ip_address",
        "birth_date",
        "date_of_birth",
        "created_by",
        "updated_by",
        "deleted_by",
    }
)


def mask_email(value: str) -> str:
    """``john@example.com`` -> ``j***@e***.com``: first letters and the top-level domain only."""
    local, _, domain = value.partition("@")
    host, dot, tld = domain.rpartition(".")
    if not dot:
        host, tld = domain, ""
    masked_host = f"{host[:1]}***" if host else "***"
    return f"{local[:1]}***@{masked_host}{'.' + tld if tld else ''}"


def mask_text(value: str) -> str:
    """``Johnson`` -> ``J***``: enough to tell values apart, not enough to read them."""
    return f"{value[:1]}***" if value else ""


def is_pii(column: str) -> bool:
    return column.lower() in PII_COLUMNS


def json_value(value: Any) -> Any:
    """A JSON-safe form of a column value: Decimal and dates as text, the rest as is."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal | float):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def redact_value(column: str, value: Any) -> Any:
    """The value as a sample may show it: masked if personal, JSON-safe otherwise."""
    if value is None:
        return None
    if isinstance(value, str) and "@" in value:
        return mask_email(value)
    if is_pii(column):
        return mask_text(str(value))
    return json_value(value)


def failure_sample(
    row_key: Mapping[str, Any], column: str, value: Any, reason: str
) -> dict[str, Any]:
    """One redacted sample: the row key, the failing column and its (masked) value."""
    return {
        "key": {name: json_value(part) for name, part in row_key.items()},
        "column": column,
        "value": redact_value(column, value),
        "reason": reason,
    }


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# A personal column's name, quoted or not, then ``=`` or ``:``, then a quoted or bare value.
_PII_ASSIGNMENT = re.compile(
    r"(?i)(?<![\w.])(?P<name>"
    + "|".join(sorted(PII_COLUMNS, key=len, reverse=True))
    + r")(?P<sep>[\"']?\s*[:=]\s*)"
    + r"(?:(?P<quote>[\"'])(?P<quoted>.*?)(?P=quote)|(?P<bare>[^\s,;)}\]]+))"
)


def _mask_assignment(match: re.Match[str]) -> str:
    quote = match.group("quote")
    if quote is not None:
        value = f"{quote}{mask_text(match.group('quoted'))}{quote}"
    else:
        value = mask_text(match.group("bare"))
    return f"{match.group('name')}{match.group('sep')}{value}"


def redact_text(text: str) -> str:
    """``text`` with email addresses and values of personal columns masked."""
    if "@" in text:
        text = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    return _PII_ASSIGNMENT.sub(_mask_assignment, text)
