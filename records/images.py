"""How complete a change event's row images are, and which columns an update changed.

Debezium does not say in a record what REPLICA IDENTITY the table has, yet it decides what
``before`` holds (reference/debezium-postgres.md 3.1, 3.3, checked on the stack):

- FULL: ``before`` is the whole old row (unchanged TOAST values included);
- DEFAULT: an update has no ``before`` at all; a delete's ``before`` holds the key columns,
  every other column null, or, when the column is NOT NULL, the column's default as the
  schema states it (``'PENDING'``, ``1``, even ``'CURRENT_USER'`` for ``DEFAULT CURRENT_USER``)
  or, without one, a zero value (``""``, ``0``, ``0.00``, ``false``, the epoch, ...);
- an unchanged TOASTed column (DEFAULT identity) is the placeholder, decoded as ``UNCHANGED``.

So an image is *key-only* when every column outside the record key is null, a zero value or
the column's schema default. A FULL image whose other columns really all hold such values
reads as key-only too: it then says nothing a key-only image could not, so the error is on
the safe side. Schemaless JSON carries no defaults: there a key-only delete image of a table
with NOT NULL columns that have defaults reads as FULL (the unsafe side: use Avro or JSON
with schemas when you rely on this flag).

Everything here is computed on demand from an already decoded event (``ChangeEvent``'s
properties call it), so decoding an ordinary record costs nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Any

from records.unchanged import UNCHANGED


class Image(StrEnum):
    """What a ``before`` or ``after`` image holds."""

    #: Every column's value.
    FULL = "full"
    #: Only the key columns mean something (REPLICA IDENTITY DEFAULT or USING INDEX).
    KEY_ONLY = "key_only"
    #: Some columns are ``UNCHANGED`` (TOASTed values PostgreSQL did not send).
    UNCHANGED_COLUMNS = "unchanged_columns"
    #: The change had such a row but the event carries none (update, REPLICA IDENTITY DEFAULT).
    MISSING = "missing"
    #: The operation has no such row (``before`` of a create or read, ``after`` of a delete,
    #: truncates and logical messages).
    NONE = "none"


PARTIAL = frozenset({Image.KEY_ONLY, Image.UNCHANGED_COLUMNS, Image.MISSING})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: What Debezium writes for a NOT NULL column PostgreSQL left out, decoded (and, for
#: schemaless JSON without a column map, raw). Falsy values (0, "", b"", False, [],
#: timedelta 0) are caught before this tuple is looked at.
_ZERO_VALUES: tuple[Any, ...] = (
    _EPOCH,
    date(1970, 1, 1),
    time(0),
    time(0, tzinfo=UTC),
    "1970-01-01T00:00:00Z",  # io.debezium.time.ZonedTimestamp
    "00:00:00Z",  # io.debezium.time.ZonedTime
    "AA==",  # a zero Decimal's bytes in base64
)


def _says_nothing(value: Any, default: Any) -> bool:
    if value is None:
        return True
    if value is UNCHANGED:
        return False
    return not value or value in _ZERO_VALUES or (default is not None and value == default)


def is_key_only(
    row: Mapping[str, Any], key: Mapping[str, Any] | None, defaults: Mapping[str, Any] | None = None
) -> bool:
    """True when ``row`` holds nothing beyond ``key``'s columns (see the module docstring);
    ``defaults`` are the NOT NULL columns' schema defaults.

    Without a key (a table without primary key) there is nothing to compare: False. A row
    with no column besides the key is the full row, not a key-only image.
    """
    if not key:
        return False
    defaults = defaults or {}
    others = [(value, defaults.get(column)) for column, value in row.items() if column not in key]
    return bool(others) and all(_says_nothing(value, default) for value, default in others)


def has_unchanged(row: Mapping[str, Any]) -> bool:
    return any(value is UNCHANGED for value in row.values())


def before_image(
    op: str,
    before: Mapping[str, Any] | None,
    key: Mapping[str, Any] | None,
    defaults: Mapping[str, Any] | None = None,
) -> Image:
    """What ``before`` holds for an event of operation ``op`` (``u``, ``d``, ...)."""
    if before is None:
        return Image.MISSING if op in ("u", "d") else Image.NONE
    return _image(before, key, defaults)


def after_image(op: str, after: Mapping[str, Any] | None) -> Image:
    """What ``after`` holds: an after-image is never key-only, but may miss TOAST values."""
    if after is None:
        return Image.MISSING if op in ("c", "u", "r") else Image.NONE
    return Image.UNCHANGED_COLUMNS if has_unchanged(after) else Image.FULL


def _image(
    row: Mapping[str, Any], key: Mapping[str, Any] | None, defaults: Mapping[str, Any] | None
) -> Image:
    if has_unchanged(row):
        return Image.UNCHANGED_COLUMNS
    if is_key_only(row, key, defaults):
        return Image.KEY_ONLY
    return Image.FULL


def _differs(old: Any, new: Any) -> bool:
    # == is how PostgreSQL compares within a type (numeric 1.5 = 1.50, as Decimal does)
    if old is new or old == new:
        return False
    # float NaN never equals itself, yet NaN to NaN is no change
    return not (isinstance(old, float) and isinstance(new, float) and old != old and new != new)


def changed_columns(before: Mapping[str, Any], after: Mapping[str, Any]) -> frozenset[str]:
    """Columns whose value differs between a full ``before`` and ``after``.

    An ``UNCHANGED`` value in ``after`` is unchanged by definition (PostgreSQL leaves a TOAST
    value out only when the update did not touch it). A column in only one image counts as
    changed (the schema changed between them).
    """
    changed = set(before.keys() ^ after.keys())
    for column, new in after.items():
        if new is UNCHANGED or column not in before:
            continue
        if _differs(before[column], new):
            changed.add(column)
    return frozenset(changed)
