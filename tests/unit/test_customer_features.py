"""Customer features as of an injectable clock: hand-computed cases (DESIGN.md section 8)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from config.settings import FeatureSettings
from tables.features import CurrencyRates, CustomerFeatureState, UnknownCurrencyRateError
from tables.orders import ItemRow, OrderRow, ProductRow

NOW = datetime(2026, 3, 31, 12, tzinfo=UTC)
RATES = CurrencyRates(
    [
        ("USD", date(2020, 1, 1), Decimal(1)),
        ("EUR", date(2020, 1, 1), Decimal("1.08")),
        ("EUR", date(2026, 3, 20), Decimal("1.10")),
    ]
)


def state() -> CustomerFeatureState:
    settings = FeatureSettings()
    features = CustomerFeatureState(
        RATES,
        lookback=timedelta(days=30),
        segments=settings.segments,
        fallback_segment=settings.fallback_segment,
    )
    features.apply_category(1, "Books")
    features.apply_category(2, "Games")
    features.apply_product(10, ProductRow(10, 1))
    features.apply_product(20, ProductRow(20, 2))
    return features


def order(order_id: int, amount: str, days_ago: float, currency: str = "USD") -> OrderRow:
    created = NOW - timedelta(days=days_ago)
    return OrderRow(order_id, 5, "DELIVERED", currency, Decimal(amount), created)


def test_rates_take_the_latest_valid_from_and_round_half_up() -> None:
    assert RATES.rate("EUR", date(2026, 3, 19)) == Decimal("1.08")
    assert RATES.rate("EUR", date(2026, 3, 20)) == Decimal("1.10")
    assert RATES.to_usd(Decimal("10.05"), "EUR", date(2026, 1, 1)) == Decimal("10.85")  # 10.854
    with pytest.raises(UnknownCurrencyRateError):
        RATES.rate("JPY", date(2026, 1, 1))


def test_features_over_thirty_days_and_lifetime_in_usd() -> None:
    features = state()
    features.apply_order(1, order(1, "100.00", days_ago=2, currency="EUR"))  # 110.00 USD
    features.apply_order(2, order(2, "50.00", days_ago=40))  # lifetime only
    pending = OrderRow(3, 5, "PENDING", "USD", Decimal("999.00"), NOW)
    features.apply_order(3, pending)
    (row,) = features.emit(NOW)
    values = row.values
    assert values.order_count_last_30_days == 1
    assert values.total_spent_last_30_days == Decimal("110.00")
    assert values.avg_order_value == Decimal("110.00")
    assert (values.lifetime_order_count, values.lifetime_value) == (2, Decimal("160.00"))
    assert values.lifetime_segment == "NEW"
    assert (row.feature_version, row.as_of, row.features_updated_at) == (1, NOW, NOW)


def test_features_change_when_an_order_ages_past_thirty_days_without_an_event() -> None:
    features = state()
    features.apply_order(1, order(1, "30.00", days_ago=29))
    features.apply_order(2, order(2, "10.00", days_ago=1))
    (first,) = features.emit(NOW)
    assert first.values.order_count_last_30_days == 2
    later = NOW + timedelta(days=1, seconds=1)
    features.sweep(NOW + timedelta(hours=1))
    assert features.emit(NOW + timedelta(hours=1)) == []  # nothing aged out yet
    features.sweep(later)
    (second,) = features.emit(later)
    assert second.values.order_count_last_30_days == 1
    assert second.values.total_spent_last_30_days == Decimal("10.00")
    assert second.values.lifetime_order_count == 2
    assert second.feature_version == 2
    assert second.as_of == later


def test_no_recent_orders_gives_null_average_and_no_category() -> None:
    features = state()
    features.apply_order(1, order(1, "30.00", days_ago=31))
    (row,) = features.emit(NOW)
    assert row.values.avg_order_value is None
    assert row.values.preferred_category is None
    assert row.values.total_spent_last_30_days == Decimal("0.00")


def item(item_id: int, order_id: int, product: int, quantity: int, price: str) -> ItemRow:
    return ItemRow(item_id, order_id, product, quantity, Decimal(price))


def test_preferred_category_is_highest_spend_then_item_count_then_name() -> None:
    features = state()
    features.apply_order(1, order(1, "40.00", days_ago=1))
    features.apply_item(1, item(1, 1, 10, 1, "20.00"), None)  # Books: 20.00, 1 item
    features.apply_item(2, item(2, 1, 20, 2, "10.00"), None)  # Games: 20.00, 2 items
    assert features.emit(NOW)[0].values.preferred_category == "Games"
    features.apply_item(2, item(2, 1, 20, 1, "20.00"), None)  # Games: 20.00, 1 item
    assert features.emit(NOW)[0].values.preferred_category == "Books"  # name breaks the tie
    features.apply_item(3, item(3, 1, 20, 1, "0.01"), None)
    assert features.emit(NOW)[0].values.preferred_category == "Games"  # spend wins


def test_category_move_of_a_product_is_reflected() -> None:
    features = state()
    features.apply_order(1, order(1, "20.00", days_ago=1))
    features.apply_item(1, item(1, 1, 10, 1, "20.00"), None)
    assert features.emit(NOW)[0].values.preferred_category == "Books"
    features.apply_product(10, ProductRow(10, 2))
    assert features.emit(NOW)[0].values.preferred_category == "Games"


def test_cancel_and_duplicates_and_segments() -> None:
    features = state()
    for number in range(1, 4):
        features.apply_order(number, order(number, "10.00", days_ago=number))
    (row,) = features.emit(NOW)
    assert row.values.lifetime_segment == "REGULAR"
    features.apply_order(3, order(3, "10.00", days_ago=3))  # duplicate
    assert features.emit(NOW) == []
    cancelled = OrderRow(3, 5, "CANCELLED", "USD", Decimal("10.00"), NOW - timedelta(days=3))
    features.apply_order(3, cancelled)
    (after,) = features.emit(NOW)
    assert (after.values.lifetime_order_count, after.values.lifetime_segment) == (2, "NEW")
    features.apply_order(1, None)
    features.apply_order(2, None)
    (gone,) = features.emit(NOW)
    assert (gone.values.lifetime_order_count, gone.values.lifetime_segment) == (0, "NONE")
    assert gone.feature_version == 3


def test_vip_needs_both_order_count_and_value() -> None:
    features = state()
    for number in range(1, 21):
        features.apply_order(number, order(number, "250.00", days_ago=40 + number))
    (row,) = features.emit(NOW)
    assert (row.values.lifetime_value, row.values.lifetime_segment) == (Decimal("5000.00"), "VIP")


def test_recovery_marks_every_customer_for_recomputation() -> None:
    features = state()
    features.apply_order(1, order(1, "30.00", days_ago=29.5))
    features.emit(NOW)
    rebuilt = CustomerFeatureState(
        RATES,
        lookback=timedelta(days=30),
        segments=FeatureSettings().segments,
        fallback_segment="NONE",
        orders=features.orders,
        customer_orders=features.customer_orders,
        items=features.items,
        products=features.products,
        categories=features.categories,
        features=features.features,
    )
    rebuilt.recover()
    assert rebuilt.emit(NOW) == []  # same values: nothing re-published
    rebuilt.sweep(NOW + timedelta(days=1))
    (aged,) = rebuilt.emit(NOW + timedelta(days=1))
    assert aged.values.order_count_last_30_days == 0


def test_a_replayed_older_product_change_does_not_bring_its_old_category_back() -> None:
    """Found by the chaos soak: a duplicated batch re-delivered a product's older version."""
    features = state()
    features.apply_order(1, order(1, "20.00", days_ago=1))
    features.apply_item(1, item(1, 1, 10, 1, "20.00"), None)
    features.apply_product(10, ProductRow(10, 2, lsn=200), 200)  # moved to Games at LSN 200
    assert features.emit(NOW)[0].values.preferred_category == "Games"
    features.apply_product(10, ProductRow(10, 1, lsn=100), 100)  # replay of the LSN-100 row
    assert features.emit(NOW) == []
    features.apply_product(10, None, 300)  # hard delete, then a replayed older insert
    features.apply_product(10, ProductRow(10, 2, lsn=200), 200)
    (row,) = features.emit(NOW)
    assert row.values.preferred_category is None


def test_a_replayed_older_item_change_or_insert_after_delete_changes_nothing() -> None:
    features = state()
    features.apply_order(1, order(1, "40.00", days_ago=1))
    features.apply_item(1, replace(item(1, 1, 10, 1, "20.00"), lsn=100), None, 100)
    features.apply_item(2, replace(item(2, 1, 20, 1, "30.00"), lsn=110), None, 110)
    assert features.emit(NOW)[0].values.preferred_category == "Games"
    features.apply_item(2, replace(item(2, 1, 20, 1, "10.00"), lsn=120), None, 120)
    assert features.emit(NOW)[0].values.preferred_category == "Books"
    features.apply_item(2, replace(item(2, 1, 20, 1, "30.00"), lsn=110), None, 110)  # replay
    assert features.emit(NOW) == []
    features.apply_item(1, None, 1, 130)  # hard delete of the Books item
    assert features.emit(NOW)[0].values.preferred_category == "Games"
    features.apply_item(1, replace(item(1, 1, 10, 1, "20.00"), lsn=100), None, 100)  # replay
    assert features.emit(NOW) == []


def test_emit_takes_at_most_its_limit_and_keeps_the_rest_for_the_next_call() -> None:
    features = state()
    features.dirty.clear()  # the categories' recompute-all of an empty state
    for order_id in range(1, 6):
        features.apply_order(order_id, replace(order(order_id, "10.00", 1), customer_id=order_id))
    first = features.emit(NOW, limit=2)
    assert [f.customer_id for f in first] == [1, 2]
    assert features.dirty == {3, 4, 5}
    assert features.pending()  # what GET /health reports as features_pending
    rest = features.emit(NOW, limit=2) + features.emit(NOW, limit=2)
    assert [f.customer_id for f in rest] == [3, 4, 5]
    assert features.dirty == set()
    assert not features.pending()
    assert features.emit(NOW, limit=2) == []


def test_recompute_all_sweeps_every_customer_limit_by_limit_while_changes_go_on() -> None:
    features = state()
    for order_id in range(1, 8):
        features.apply_order(order_id, replace(order(order_id, "10.00", 1), customer_id=order_id))
    assert len(features.emit(NOW)) == 7
    for customer_id, stored in list(features.features.items()):  # as if gold held others
        features.features[customer_id] = replace(
            stored, values=replace(stored.values, lifetime_order_count=0)
        )
    features.recompute_all()  # e.g. a restart: every customer, without a set of them all
    assert features.dirty == set()
    assert features.pending()  # the sweep is under way
    features.apply_order(99, replace(order(99, "5.00", 1), customer_id=3))  # during the sweep
    emitted = [f.customer_id for f in features.emit(NOW, limit=3)]
    assert emitted == [1, 2, 3]  # the changed customer first, then the sweep's
    while batch := features.emit(NOW, limit=3):
        emitted += [f.customer_id for f in batch]
    assert sorted(emitted) == [1, 2, 3, 4, 5, 6, 7]  # swept again, 3 is unchanged
    assert not features.pending()
    assert features.emit(NOW, limit=3) == []


def test_a_bounded_sweep_ages_out_a_share_per_call_and_stays_pending_until_done() -> None:
    """Issue 23: after a long replay many orders left the look-back at once; each tick takes
    at most its limit of them, and features stay pending until the schedule has none due."""
    features = state()
    for order_id in range(1, 6):  # five customers, each order about to leave the look-back
        placed = replace(
            order(order_id, "10.00", days_ago=29 + (6 - order_id) / 10), customer_id=order_id
        )
        features.apply_order(order_id, placed)
    assert [f.customer_id for f in features.emit(NOW)] == [1, 2, 3, 4, 5]
    later = NOW + timedelta(days=1)  # every order is now older than 30 days
    counts = []
    while True:
        features.sweep(later, limit=2)
        assert len(features.dirty) <= 2  # taken off the schedule two at a time
        emitted = features.emit(later, limit=2)
        if not emitted:
            break
        counts.append([f.customer_id for f in emitted])
        assert all(f.values.order_count_last_30_days == 0 for f in emitted)
        assert features.pending() == (len(counts) < 3)
    assert counts == [[1, 2], [3, 4], [5]]  # the earliest orders leave first
    assert not features.pending()
