"""The demo's comparisons of gold with the SQL recomputation: to the cent, naming table and key."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from demo.checks import (
    busiest_windows,
    compare_features,
    compare_hourly,
    currency_totals,
)
from observability.pipeline_probes import pipeline_lag

T0 = datetime(2026, 12, 1, 10, tzinfo=UTC)
T1 = datetime(2026, 12, 1, 11, tzinfo=UTC)


def hourly(revenue: str, count: int, average: str) -> tuple[Decimal, int, Decimal]:
    return Decimal(revenue), count, Decimal(average)


def test_a_one_cent_difference_names_gold_hourly_revenue_and_the_window() -> None:
    expected = {(T0, "USD"): hourly("10.00", 1, "10.00")}
    gold = {(T0, "USD"): hourly("10.01", 1, "10.01")}
    [mismatch] = compare_hourly(expected, gold)
    assert mismatch.table == "gold.hourly_revenue"
    assert mismatch.key == "window 2026-12-01T10:00:00+00:00 USD"
    assert "10.01" in str(mismatch)
    assert "10.00" in str(mismatch)


def test_equal_windows_and_a_window_retracted_to_zero_pass() -> None:
    expected = {(T0, "USD"): hourly("10.00", 1, "10.00")}
    gold = {**expected, (T1, "EUR"): hourly("0", 0, "0")}
    assert compare_hourly(expected, gold) == []


def test_missing_and_extra_windows_are_both_mismatches() -> None:
    expected = {(T0, "USD"): hourly("10.00", 1, "10.00")}
    gold = {(T1, "USD"): hourly("5.00", 1, "5.00")}
    keys = [m.key for m in compare_hourly(expected, gold)]
    assert keys == ["window 2026-12-01T10:00:00+00:00 USD", "window 2026-12-01T11:00:00+00:00 USD"]


def test_totals_and_busiest_windows_per_currency() -> None:
    rows = {
        (T0, "USD"): hourly("10.00", 1, "10.00"),
        (T1, "USD"): hourly("30.50", 2, "15.25"),
        (T0, "EUR"): hourly("7.00", 1, "7.00"),
    }
    assert currency_totals(rows) == {
        "EUR": (Decimal("7.00"), 1),
        "USD": (Decimal("40.50"), 3),
    }
    busiest = busiest_windows(rows, per_currency=1)
    assert [(w.currency, w.window_start, w.revenue) for w in busiest] == [
        ("EUR", T0, Decimal("7.00")),
        ("USD", T1, Decimal("30.50")),
    ]


def test_feature_differences_name_the_customer() -> None:
    values = (2, Decimal("20.00"), Decimal("10.00"), "Books", 2, Decimal("20.00"), "NEW")
    changed = (2, Decimal("20.00"), Decimal("10.00"), "Books", 2, Decimal("20.01"), "NEW")
    [mismatch] = compare_features({7: values}, {7: changed})
    assert (mismatch.table, mismatch.key) == ("gold.customer_features", "customer 7")
    gone = (0, Decimal(0), None, None, 0, Decimal(0), "NONE")
    assert compare_features({7: values}, {7: values, 8: gone}) == []


def test_pipeline_lag_sums_what_is_left_per_partition_never_negative() -> None:
    ends = {("t", 0): 10, ("t", 1): 5, ("u", 0): 3}
    assert pipeline_lag({("t", 0): 4, ("t", 1): 9}, ends) == 6 + 0 + 3
