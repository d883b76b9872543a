"""The silver allow-list refuses unknown identifiers and values PostgreSQL could not cast."""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

import pytest

from cli.quality import InvalidDurationError, parse_duration
from quality.rules import Rule
from sinks.postgres.quality.catalog import SilverCatalog, UnknownColumnError, castable
from tests.unit.quality_rules_factory import rule

CATALOG = SilverCatalog(
    MappingProxyType(
        {
            "customers": {"customer_id": "bigint", "email": "text", "hard_deleted": "boolean"},
            "orders": {"order_id": "bigint", "customer_id": "bigint", "created_at": "timestamp"},
        }
    )
)


def test_a_rule_on_known_columns_with_a_known_reference_target_passes() -> None:
    CATALOG.check_rule(
        rule(
            1, "orders", "customer_id", "REFERENCE", {"table": "customers", "column": "customer_id"}
        )
    )


@pytest.mark.parametrize(
    ("checked", "message"),
    [
        (rule(1, "refunds", "id", "NOT_NULL"), "silver has no table 'refunds'"),
        (rule(2, "orders", "total", "NOT_NULL"), "silver.orders has no column 'total'"),
        (
            rule(3, "customers", "email", "REFERENCE", {"table": "orders", "column": "created_at"}),
            "silver.orders.created_at is timestamp; keys and references must be one of",
        ),
        (
            rule(4, "customers", "email", "REFERENCE", {"table": "orders", "column": "order_id"}),
            "silver.orders has no column 'hard_deleted'",
        ),
    ],
)
def test_rules_naming_what_silver_lacks_are_refused(checked: Rule, message: str) -> None:
    with pytest.raises(UnknownColumnError, match=message):
        CATALOG.check_rule(checked)


@pytest.mark.parametrize(
    ("cast", "text", "ok"),
    [
        ("bigint", "42", True),
        ("bigint", "-9223372036854775808", True),
        ("bigint", "9223372036854775808", False),
        ("integer", "2147483648", False),
        ("bigint", "4.2", False),
        ("numeric", "4.20", True),
        ("numeric", "NaN", False),
        ("date", "2024-05-01", True),
        ("date", "yesterday", False),
        ("uuid", "00000000-0000-0000-0000-000000000000", True),
        ("uuid", "x", False),
        ("text", "anything", True),
        ("text", "nul\x00", False),
    ],
)
def test_only_values_postgresql_can_cast_are_sent(cast: str, text: str, ok: bool) -> None:
    assert castable(cast, text) is ok


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
    ],
)
def test_report_periods_read_as_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "1", "h", "1y", "-1h", "soon"])
def test_unreadable_periods_are_refused(text: str) -> None:
    with pytest.raises(InvalidDurationError):
        parse_duration(text)
