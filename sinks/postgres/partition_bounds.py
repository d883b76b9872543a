"""Read a partition's range from the bound expression PostgreSQL prints for it.

``pg_get_expr(relpartbound, oid)`` gives ``FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')``,
``DEFAULT``, or for other schemes (list, hash, several key columns) something else. Only a
single-column range over a date or timestamp yields times; anything else keeps its text and has
no times, so no time-based rule (retention, premade-ahead) ever applies to it. Times are UTC:
the catalog is read with ``TimeZone = 'UTC'`` and ``DateStyle = 'ISO'``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

DEFAULT_BOUND = "DEFAULT"
_RANGE = re.compile(r"^FOR VALUES FROM \((?P<lower>[^,()]+)\) TO \((?P<upper>[^,()]+)\)$")


@dataclass(frozen=True, slots=True)
class PartitionBounds:
    """One child's range: ``lower`` inclusive, ``upper`` exclusive, as UTC times when known."""

    expression: str
    is_default: bool = False
    lower_text: str | None = None
    upper_text: str | None = None
    lower: datetime | None = None
    upper: datetime | None = None


def parse_partition_bound(expression: str) -> PartitionBounds:
    """The bounds in ``expression``; unknown shapes keep only their text."""
    text = expression.strip()
    if text == DEFAULT_BOUND:
        return PartitionBounds(expression=text, is_default=True)
    match = _RANGE.match(text)
    if match is None:
        return PartitionBounds(expression=text)
    lower_text = _unquote(match["lower"])
    upper_text = _unquote(match["upper"])
    return PartitionBounds(
        expression=text,
        lower_text=lower_text,
        upper_text=upper_text,
        lower=parse_bound_time(lower_text),
        upper=parse_bound_time(upper_text),
    )


def parse_bound_time(literal: str) -> datetime | None:
    """A date or timestamp literal as a UTC time; None for MINVALUE/MAXVALUE or non-times.

    A date is its midnight UTC; a timestamp without zone is read as UTC (the session's zone).
    """
    if literal in ("MINVALUE", "MAXVALUE"):
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", literal):
            day = date.fromisoformat(literal)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        if not re.match(r"\d{4}-\d{2}-\d{2}[ T]\d", literal):
            return None  # an id or text key: not a time
        moment = datetime.fromisoformat(literal)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value
