"""Worked examples for every Debezium semantic type; expected values computed by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from serdes import logical_types as lt
from serdes.field_plan import UUID_ARRAY_PLACEHOLDER


@pytest.mark.parametrize(
    ("data", "scale", "expected"),
    [
        (bytes.fromhex("3039"), 2, "123.45"),  # 12345 = 0x3039
        (bytes.fromhex("ef66"), 2, "-42.50"),  # 65536 - 4250 = 0xEF66
        (bytes.fromhex("0080"), 2, "1.28"),  # 128 needs a leading 00 (sign bit)
        (bytes.fromhex("80"), 2, "-1.28"),  # ... without it, it is negative
        (bytes.fromhex("02540be3ff"), 2, "99999999.99"),
        (bytes.fromhex("00"), 4, "0.0000"),
        (bytes.fromhex("ff"), 10, "-0.0000000001"),
    ],
)
def test_decimal_bytes_are_signed_big_endian_with_the_scale_kept(
    data: bytes, scale: int, expected: str
) -> None:
    value = lt.decimal_from_bytes(data, scale)
    assert value == Decimal(expected)
    assert value.as_tuple().exponent == -scale


def test_decimal_with_more_digits_than_the_default_context_is_exact() -> None:
    unscaled = 10**45 - 1  # 45 nines; Decimal's default context keeps only 28 digits
    data = unscaled.to_bytes(19, "big", signed=True)
    assert lt.decimal_from_bytes(data, 10) == Decimal(
        "99999999999999999999999999999999999.9999999999"
    )


def test_variable_scale_decimal_from_avro_and_json() -> None:
    assert lt.variable_scale_decimal({"scale": 4, "value": bytes.fromhex("01df5e76")}) == Decimal(
        "3141.5926"
    )
    assert lt.variable_scale_decimal({"scale": 1, "value": "+w=="}) == Decimal("-0.5")
    assert lt.variable_scale_decimal({"scale": 4, "value": "Ad9edg=="}) == Decimal("3141.5926")


def test_decimal_converter_reads_base64_json_text() -> None:
    assert lt.decimal_converter(2)("MDk=") == Decimal("123.45")
    assert lt.decimal_converter(2)("72Y=") == Decimal("-42.50")


def test_dates_count_days_from_1970_in_both_directions() -> None:
    assert lt.date_from_days(0) == date(1970, 1, 1)
    assert lt.date_from_days(19782) == date(2024, 2, 29)
    assert lt.date_from_days(-165) == date(1969, 7, 20)
    assert lt.date_from_days(2932896) == date(9999, 12, 31)


def test_times_of_day_in_ms_us_and_ns() -> None:
    assert lt.time_from_millis(28_800_500) == time(8, 0, 0, 500_000)
    assert lt.time_from_micros(47_655_123_456) == time(13, 14, 15, 123_456)
    assert lt.time_from_nanos(47_655_123_456_789) == time(13, 14, 15, 123_456)
    assert lt.time_from_micros(86_399_999_999) == time(23, 59, 59, 999_999)
    assert lt.time_from_micros(86_400_000_000) == time.max  # PostgreSQL's 24:00:00


def test_time_outside_a_day_is_a_typed_error() -> None:
    with pytest.raises(lt.LogicalTypeError):
        lt.time_from_micros(-1)


def test_zoned_time_is_utc() -> None:
    assert lt.zoned_time("08:11:12.345Z") == time(8, 11, 12, 345_000, tzinfo=UTC)


def test_micro_timestamp_docs_example_and_pre_1970_and_far_future() -> None:
    assert lt.timestamp_from_micros(1529507596945104) == datetime(
        2018, 6, 20, 15, 13, 16, 945104, tzinfo=UTC
    )
    # 1900-01-01 00:00:00.000001: 70 years incl. 17 leap days = 25567 days before the epoch
    assert lt.timestamp_from_micros(-25567 * 86_400_000_000 + 1) == datetime(
        1900, 1, 1, 0, 0, 0, 1, tzinfo=UTC
    )
    assert lt.timestamp_from_micros(-1) == datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert lt.timestamp_from_micros(253402300799999999) == datetime(
        9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC
    )


def test_milli_and_nano_timestamps() -> None:
    assert lt.timestamp_from_millis(1529507596900) == datetime(
        2018, 6, 20, 15, 13, 16, 900000, tzinfo=UTC
    )
    assert lt.timestamp_from_millis(-1) == datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert lt.timestamp_from_nanos(1767225600123456789) == datetime(
        2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC
    )
    # floor, not truncation toward zero, before 1970: -1 ns is 1969-12-31 23:59:59.999999
    assert lt.timestamp_from_nanos(-1) == datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def test_infinity_sentinels_map_to_the_extreme_datetimes() -> None:
    assert lt.timestamp_from_micros(9223372036825200000) == lt.POSITIVE_INFINITY
    assert lt.timestamp_from_millis(-9223372036832400000) == lt.NEGATIVE_INFINITY
    assert lt.zoned_timestamp("infinity") == lt.POSITIVE_INFINITY


def test_timestamp_beyond_python_range_raises_a_typed_error_through_the_plan() -> None:
    from serdes.field_plan import apply_row

    with pytest.raises(lt.LogicalTypeError, match="moment"):
        apply_row((("moment", lt.timestamp_from_micros),), {"moment": 2**62})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-12-17T08:30:00.5Z", datetime(2024, 12, 17, 8, 30, 0, 500000, tzinfo=UTC)),
        ("2025-02-22T09:57:48.517360Z", datetime(2025, 2, 22, 9, 57, 48, 517360, tzinfo=UTC)),
        ("2025-02-22T09:57:48Z", datetime(2025, 2, 22, 9, 57, 48, tzinfo=UTC)),
        # Europe/Berlin DST: 2024-03-31 01:30 CET (+01) is 00:30 UTC; the clocks jump at 02:00
        ("2024-03-31T01:30:00+01:00", datetime(2024, 3, 31, 0, 30, tzinfo=UTC)),
        ("2024-03-31T03:30:00+02:00", datetime(2024, 3, 31, 1, 30, tzinfo=UTC)),
        # 2024-10-27 02:30 happens twice in Berlin: +02 (00:30 UTC) and +01 (01:30 UTC)
        ("2024-10-27T02:30:00+02:00", datetime(2024, 10, 27, 0, 30, tzinfo=UTC)),
        ("2024-10-27T02:30:00+01:00", datetime(2024, 10, 27, 1, 30, tzinfo=UTC)),
    ],
)
def test_zoned_timestamps_normalise_to_utc_across_dst(text: str, expected: datetime) -> None:
    value = lt.zoned_timestamp(text)
    assert value == expected
    assert value.utcoffset() == timedelta(0)
    assert value.tzinfo is UTC or value.tzinfo == UTC


def test_micro_duration_counts_a_month_as_30_4375_days() -> None:
    assert lt.duration_from_micros(273_906_789_000) == timedelta(
        days=3, hours=4, minutes=5, seconds=6, milliseconds=789
    )
    # interval '1 month' as Debezium writes it: 30.4375 days = 2_629_800 s
    assert lt.duration_from_micros(2_629_800_000_000) == timedelta(days=30, hours=10, minutes=30)
    assert lt.duration_from_micros(-86_400_000_001) == -timedelta(days=1, microseconds=1)


def test_uuid_and_json_and_base64_bytes() -> None:
    assert lt.uuid_from_text("ef9b5beb-1f7c-4b8e-a6c1-0f8c2f4c8a11") == UUID(
        "ef9b5beb1f7c4b8ea6c10f8c2f4c8a11"
    )
    assert lt.json_from_text('{"a": [1, 2.5, "x"], "b": null}') == {"a": [1, 2.5, "x"], "b": None}
    assert lt.json_from_text('"text"') == "text"
    assert lt.bytes_from_base64("X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==") == lt.PLACEHOLDER_BYTES


def test_uuid_array_placeholder_is_javas_name_uuid_of_the_placeholder() -> None:
    assert UUID_ARRAY_PLACEHOLDER == "b68a35a7-17ad-35b3-af2a-ae46edb4545a"


def test_unchanged_marker_is_a_singleton_with_a_readable_repr() -> None:
    assert lt.Unchanged() is lt.UNCHANGED
    assert repr(lt.UNCHANGED) == "UNCHANGED"
