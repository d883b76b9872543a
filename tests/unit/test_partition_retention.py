"""The pure retention decision: bounds read from the catalog's text, past-retention around
the boundary, per-table settings, archive names. Worked examples are computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.settings import PartitionSettings, load_settings
from sinks.postgres.partition_bounds import PartitionBounds, parse_partition_bound
from sinks.postgres.retention import (
    MAX_IDENTIFIER,
    archive_index_name,
    archive_table_name,
    is_ahead,
    is_past_retention,
    setting_for,
    unknown_keys,
)

DAYS_30 = timedelta(days=30)


def day(text: str) -> PartitionBounds:
    """The daily child starting on ``text``, as PostgreSQL prints its bound."""
    start = datetime.fromisoformat(text).replace(tzinfo=UTC)
    end = start + timedelta(days=1)
    return parse_partition_bound(f"FOR VALUES FROM ('{start:%Y-%m-%d}') TO ('{end:%Y-%m-%d}')")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_date_range_bound_is_read_as_utc_midnights() -> None:
    bounds = parse_partition_bound("FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')")
    assert (bounds.lower, bounds.upper) == (utc("2024-01-01"), utc("2024-02-01"))
    assert (bounds.lower_text, bounds.upper_text) == ("2024-01-01", "2024-02-01")
    assert not bounds.is_default


def test_timestamptz_bound_is_converted_to_utc() -> None:
    bounds = parse_partition_bound(
        "FOR VALUES FROM ('2024-01-01 02:00:00+02') TO ('2024-01-02 00:00:00+00')"
    )
    assert bounds.lower == utc("2024-01-01 00:00")
    assert bounds.upper == utc("2024-01-02 00:00")


def test_default_minvalue_and_non_time_bounds_have_no_times() -> None:
    assert parse_partition_bound("DEFAULT").is_default
    open_below = parse_partition_bound("FOR VALUES FROM (MINVALUE) TO ('2024-01-01')")
    assert (open_below.lower, open_below.upper) == (None, utc("2024-01-01"))
    ids = parse_partition_bound("FOR VALUES FROM ('0') TO ('1000')")
    assert (ids.lower_text, ids.upper_text, ids.lower, ids.upper) == ("0", "1000", None, None)
    listed = parse_partition_bound("FOR VALUES IN ('EU', 'US')")
    assert (listed.lower, listed.upper, listed.is_default) == (None, None, False)
    two_columns = parse_partition_bound("FOR VALUES FROM ('2024-01-01', 1) TO ('2024-01-02', 1)")
    assert two_columns.upper is None


@pytest.mark.parametrize(
    ("child", "now", "past"),
    [
        # now 2026-03-31 12:00, 30 days: cutoff 2026-03-01 12:00.
        ("2026-02-28", "2026-03-31 12:00", True),  # ends 03-01 00:00, before the cutoff
        ("2026-03-01", "2026-03-31 12:00", False),  # its morning is old, its evening is not
        # now exactly 2026-03-31 00:00: cutoff 2026-03-01 00:00 equals the upper bound; every
        # row of the child is strictly older than the cutoff, so it goes.
        ("2026-02-28", "2026-03-31 00:00", True),
        ("2026-03-01", "2026-03-31 00:00", False),
        # one microsecond earlier the cutoff is inside 02-28: keep it a little longer.
        ("2026-02-28", "2026-03-30 23:59:59.999999", False),
        ("2026-02-27", "2026-03-30 23:59:59.999999", True),
    ],
)
def test_daily_child_is_past_retention_when_its_upper_bound_reaches_the_cutoff(
    child: str, now: str, past: bool
) -> None:
    assert is_past_retention(day(child), utc(now), DAYS_30) is past


def test_monthly_child_past_ninety_days() -> None:
    now = utc("2026-11-26 20:00")  # cutoff 2026-08-28 20:00
    july = parse_partition_bound("FOR VALUES FROM ('2026-07-01') TO ('2026-08-01')")
    august = parse_partition_bound("FOR VALUES FROM ('2026-08-01') TO ('2026-09-01')")
    assert is_past_retention(july, now, timedelta(days=90))
    assert not is_past_retention(august, now, timedelta(days=90))


def test_zero_retention_retires_yesterday_but_not_today() -> None:
    now = utc("2026-11-26 00:00")
    assert is_past_retention(day("2026-11-25"), now, timedelta(0))
    assert not is_past_retention(day("2026-11-26"), now, timedelta(0))


def test_default_and_unbounded_children_are_never_past_retention() -> None:
    far_future = utc("2999-01-01")
    assert not is_past_retention(parse_partition_bound("DEFAULT"), far_future, timedelta(0))
    open_above = parse_partition_bound("FOR VALUES FROM ('2020-01-01') TO (MAXVALUE)")
    assert not is_past_retention(open_above, far_future, timedelta(0))
    ids = parse_partition_bound("FOR VALUES FROM ('0') TO ('1000')")
    assert not is_past_retention(ids, far_future, timedelta(0))
    open_below = parse_partition_bound("FOR VALUES FROM (MINVALUE) TO ('2020-01-01')")
    assert is_past_retention(open_below, far_future, timedelta(0))


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_past_retention(day("2020-01-01"), datetime(2026, 1, 1), DAYS_30)  # noqa: DTZ001


def test_only_children_starting_after_now_count_as_ahead() -> None:
    assert not is_ahead(day("2026-11-26"), utc("2026-11-26 00:00"))  # the current child
    assert is_ahead(day("2026-11-27"), utc("2026-11-26 23:59"))
    assert not is_ahead(parse_partition_bound("DEFAULT"), utc("2000-01-01"))


def test_exact_key_wins_over_schema_wildcard_and_null_means_keep() -> None:
    values: dict[str, timedelta | None] = {
        "bronze.*": DAYS_30,
        "bronze.orders": timedelta(days=90),
        "bronze.payments": None,
    }
    assert setting_for("bronze.orders", values) == (True, timedelta(days=90))
    assert setting_for("bronze.customers", values) == (True, DAYS_30)
    assert setting_for("bronze.payments", values) == (True, None)
    assert setting_for("silver.orders", values) == (False, None)


def test_unknown_keys_name_tables_pg_partman_does_not_manage() -> None:
    parents = ["bronze.orders", "public.orders"]
    keys = ["bronze.orders", "bronze.ordrs", "bronze.*", "gold.*"]
    assert unknown_keys(keys, parents, wildcards=False) == ["bronze.ordrs"]
    assert unknown_keys(keys, parents, wildcards=True) == ["bronze.ordrs", "gold.*"]


def test_archive_names_keep_parent_and_range_and_differ_between_schemas() -> None:
    january = parse_partition_bound("FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')")
    assert archive_table_name("silver", "orders", january) == "silver_orders_20240101_20240201"
    assert archive_table_name("public", "orders", january) == "public_orders_20240101_20240201"
    hourly = parse_partition_bound(
        "FOR VALUES FROM ('2024-01-01 05:00:00+00') TO ('2024-01-01 06:00:00+00')"
    )
    assert archive_table_name("bronze", "t", hourly) == "bronze_t_20240101T050000_20240101T060000"


def test_long_archive_names_fit_postgres_and_stay_distinct() -> None:
    table = "a_very_long_partitioned_table_name_that_goes_on_and_on"
    first = archive_table_name("bronze", table, day("2024-01-01"))
    second = archive_table_name("bronze", table, day("2024-01-02"))
    assert len(first.encode()) <= MAX_IDENTIFIER
    assert len(second.encode()) <= MAX_IDENTIFIER
    assert first != second


def test_archived_index_names_follow_the_archive_table() -> None:
    archive = "bronze_orders_20200101_20200102"
    assert archive_index_name("orders_p2020_01_01", archive, "orders_p2020_01_01_pkey") == (
        "bronze_orders_20200101_20200102_pkey"
    )
    assert archive_index_name("orders_p2020_01_01", archive, "custom_idx") == (
        "bronze_orders_20200101_20200102_custom_idx"
    )


def test_partition_settings_default_to_thirty_days_of_bronze_detached() -> None:
    settings = PartitionSettings()
    assert settings.retention == {"bronze.*": DAYS_30}
    assert settings.archive_mode == "detach"
    assert settings.premake == {}


def test_partition_settings_come_from_json_environment_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BV_STACK__STATE_DIR", str(tmp_path))
    monkeypatch.setenv("BV_PARTITIONS__RETENTION", '{"bronze.*": "P10D", "silver.orders": null}')
    monkeypatch.setenv("BV_PARTITIONS__PREMAKE", '{"silver.orders": 6}')
    monkeypatch.setenv("BV_PARTITIONS__ARCHIVE_MODE", "drop")
    partitions = load_settings().partitions
    assert partitions.retention == {"bronze.*": timedelta(days=10), "silver.orders": None}
    assert partitions.premake == {"silver.orders": 6}
    assert partitions.archive_mode == "drop"


@pytest.mark.parametrize(
    "retention",
    [{"Bronze.Orders": DAYS_30}, {"orders": DAYS_30}, {"bronze.orders": -DAYS_30}],
)
def test_malformed_retention_settings_are_refused(
    retention: dict[str, timedelta | None],
) -> None:
    with pytest.raises(ValidationError):
        PartitionSettings(retention=retention)


def test_premake_must_be_at_least_one() -> None:
    with pytest.raises(ValidationError):
        PartitionSettings(premake={"silver.orders": 0})
