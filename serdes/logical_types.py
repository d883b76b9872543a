"""Debezium/Kafka Connect semantic types -> exact Python values, one small function each.

Debezium's temporal types are plain Avro ints/longs/strings tagged with ``connect.name``,
so a generic Avro reader leaves them as numbers; this module turns them into ``date``,
``time``, aware UTC ``datetime``, ``timedelta``, ``Decimal``, ``UUID`` and parsed JSON.
Invariant: integer arithmetic only (never through float), UTC only, and any value that
cannot be represented raises ``LogicalTypeError`` (permanent, so the record is
dead-lettered), never a bare ``ValueError``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

import orjson

from config.errors import PermanentError
from records.unchanged import UNCHANGED as UNCHANGED  # re-exported
from records.unchanged import Unchanged as Unchanged  # re-exported

Converter = Callable[[Any], Any]

PLACEHOLDER: Final = "__debezium_unavailable_value"
PLACEHOLDER_BYTES: Final = PLACEHOLDER.encode()
#: How Debezium spells the placeholder in an integer array column (the bytes as numbers).
PLACEHOLDER_INT_LIST: Final = list(PLACEHOLDER_BYTES)

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
#: ``timestamp 'infinity'`` and ``'-infinity'`` as Debezium writes them (ms and µs columns).
POSITIVE_INFINITY_SENTINEL: Final = 9223372036825200000
NEGATIVE_INFINITY_SENTINEL: Final = -9223372036832400000
#: What the sentinels become: the largest and smallest aware datetimes Python has.
POSITIVE_INFINITY: Final = datetime.max.replace(tzinfo=UTC)
NEGATIVE_INFINITY: Final = datetime.min.replace(tzinfo=UTC)


class LogicalTypeError(PermanentError):
    """A value does not fit its semantic type (corrupt bytes or out of Python's range)."""


# -- numbers -------------------------------------------------------------------------------
def decimal_from_unscaled(unscaled: int, scale: int) -> Decimal:
    """``unscaled`` x 10^-scale, exactly (no context rounding, whatever the digit count)."""
    sign, digits, _ = Decimal(unscaled).as_tuple()
    return Decimal((sign, digits, -scale))


def decimal_from_bytes(data: bytes, scale: int) -> Decimal:
    """Kafka Connect Decimal: big-endian two's-complement unscaled value, then the scale."""
    return decimal_from_unscaled(int.from_bytes(data, "big", signed=True), scale)


def variable_scale_decimal(value: Mapping[str, Any]) -> Decimal:
    """``io.debezium.data.VariableScaleDecimal``: ``{scale, value}`` (numeric without scale)."""
    raw = value["value"]
    if isinstance(raw, str):  # JSON converter: base64
        raw = base64.b64decode(raw, validate=True)
    return decimal_from_bytes(raw, int(value["scale"]))


def decimal_converter(scale: int) -> Converter:
    """Connect Decimal with a fixed ``scale``, from raw bytes (Avro) or base64 text (JSON)."""

    def convert(value: Any) -> Decimal:
        if isinstance(value, Decimal):  # fastavro already honoured logicalType decimal
            return value
        if isinstance(value, str):
            value = base64.b64decode(value, validate=True)
        return decimal_from_bytes(value, scale)

    return convert


# -- time ----------------------------------------------------------------------------------
def date_from_days(days: int) -> date:
    """``io.debezium.time.Date`` / Connect Date: days since 1970-01-01."""
    return date.fromordinal(EPOCH_ORDINAL + days)


def _time_from_micros(micros: int) -> time:
    if not 0 <= micros <= 86_400_000_000:
        raise LogicalTypeError(f"time of day {micros} us is outside 00:00..24:00")
    if micros == 86_400_000_000:
        # PostgreSQL allows 24:00:00; Python's time cannot hold it. The closest value
        # keeps ordering (it is after every other time of day).
        return time.max
    seconds, micro = divmod(micros, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return time(hour, minute, second, micro)


def time_from_millis(millis: int) -> time:
    """``io.debezium.time.Time`` / Connect Time: milliseconds past midnight."""
    return _time_from_micros(millis * 1000)


def time_from_micros(micros: int) -> time:
    """``io.debezium.time.MicroTime``: microseconds past midnight."""
    return _time_from_micros(micros)


def time_from_nanos(nanos: int) -> time:
    """``io.debezium.time.NanoTime``: nanoseconds past midnight (truncated to µs)."""
    return _time_from_micros(nanos // 1000)


def zoned_time(text: str) -> time:
    """``io.debezium.time.ZonedTime``: ISO time in UTC such as ``08:11:12.345Z``."""
    parsed = time.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.utcoffset() != timedelta(0):
        parsed = (datetime.combine(date(2000, 1, 3), parsed).astimezone(UTC)).timetz()
    return parsed


def _timestamp(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def timestamp_from_millis(millis: int) -> datetime:
    """``io.debezium.time.Timestamp`` / Connect Timestamp: ms since the epoch, as UTC."""
    if millis == POSITIVE_INFINITY_SENTINEL:
        return POSITIVE_INFINITY
    if millis == NEGATIVE_INFINITY_SENTINEL:
        return NEGATIVE_INFINITY
    return _timestamp(millis * 1000)


def timestamp_from_micros(micros: int) -> datetime:
    """``io.debezium.time.MicroTimestamp``: µs since the epoch, as UTC (``timestamp`` has no
    zone; Debezium encodes it as if it were UTC)."""
    if micros == POSITIVE_INFINITY_SENTINEL:
        return POSITIVE_INFINITY
    if micros == NEGATIVE_INFINITY_SENTINEL:
        return NEGATIVE_INFINITY
    return _timestamp(micros)


def timestamp_from_nanos(nanos: int) -> datetime:
    """``io.debezium.time.NanoTimestamp``: ns since the epoch (truncated to µs, floor)."""
    if nanos == POSITIVE_INFINITY_SENTINEL:
        return POSITIVE_INFINITY
    if nanos == NEGATIVE_INFINITY_SENTINEL:
        return NEGATIVE_INFINITY
    return _timestamp(nanos // 1000)


def zoned_timestamp(text: str) -> datetime:
    """``io.debezium.time.ZonedTimestamp``: ISO-8601 text, any fraction length, to UTC."""
    if text == "infinity":
        return POSITIVE_INFINITY
    if text == "-infinity":
        return NEGATIVE_INFINITY
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise LogicalTypeError(f"zoned timestamp {text!r} has no zone")
    return parsed.astimezone(UTC)


def duration_from_micros(micros: int) -> timedelta:
    """``io.debezium.time.MicroDuration``: µs (Debezium counts a month as 30.4375 days)."""
    return timedelta(microseconds=micros)


# -- text-like -----------------------------------------------------------------------------
def uuid_from_text(text: str) -> UUID:
    """``io.debezium.data.Uuid``."""
    return UUID(text)


def json_from_text(text: str) -> Any:
    """``io.debezium.data.Json`` (json, jsonb, hstore in json mode): the text parsed."""
    return orjson.loads(text)


def bytes_from_base64(text: str) -> bytes:
    """bytea in JSON (``binary.handling.mode=bytes``): base64 text."""
    return base64.b64decode(text, validate=True)


#: Converters by semantic name (``connect.name`` in Avro, ``name`` in JSON schemas) for the
#: types whose representation is the same in Avro and JSON. Decimal and Bytes need
#: parameters or the converter form; they are built by the callers.
BY_NAME: Final[dict[str, Converter]] = {
    "io.debezium.time.Date": date_from_days,
    "org.apache.kafka.connect.data.Date": date_from_days,
    "io.debezium.time.Time": time_from_millis,
    "org.apache.kafka.connect.data.Time": time_from_millis,
    "io.debezium.time.MicroTime": time_from_micros,
    "io.debezium.time.NanoTime": time_from_nanos,
    "io.debezium.time.ZonedTime": zoned_time,
    "io.debezium.time.Timestamp": timestamp_from_millis,
    "org.apache.kafka.connect.data.Timestamp": timestamp_from_millis,
    "io.debezium.time.MicroTimestamp": timestamp_from_micros,
    "io.debezium.time.NanoTimestamp": timestamp_from_nanos,
    "io.debezium.time.ZonedTimestamp": zoned_timestamp,
    "io.debezium.time.MicroDuration": duration_from_micros,
    "io.debezium.data.Uuid": uuid_from_text,
    "io.debezium.data.Json": json_from_text,
    "io.debezium.data.VariableScaleDecimal": variable_scale_decimal,
}
DECIMAL_NAME: Final = "org.apache.kafka.connect.data.Decimal"
#: Avro logical types fastavro converts itself (so our plan leaves those values alone).
FASTAVRO_LOGICAL_TYPES: Final = frozenset(
    {
        "decimal",
        "date",
        "time-millis",
        "time-micros",
        "timestamp-millis",
        "timestamp-micros",
        "local-timestamp-millis",
        "local-timestamp-micros",
        "uuid",
    }
)


PLACEHOLDER_BASE64: Final = "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="


def unchanged_if_placeholder(value: Any) -> Any:
    """The placeholder (text, base64 bytes or a text array) -> ``UNCHANGED``; else as is."""
    if value in (PLACEHOLDER, PLACEHOLDER_BASE64) or value == [PLACEHOLDER]:
        return UNCHANGED
    return value
