"""The analytics agent's logic through the test driver: Debezium bytes decoded by the real
decoder into ``AnalyticsCore`` (what ``agents/analytics.py`` runs per record), ticked by a
fake clock; hourly revenue rows, window closes, corrections, late events and customer
features out. Expected values are computed by hand in each test."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from config.settings import Settings
from records.change_events import ChangeEvent
from tables.analytics import AnalyticsCore, AnalyticsOutputs
from tables.features import CurrencyRates, FeatureValues
from tables.revenue import HourlyRevenueRow, LateEvent
from tests.driver import (
    CdcRecords,
    FakeClock,
    InputRecord,
    category_row,
    item_row,
    order_row,
    product_row,
)

T10 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
T11 = T10 + timedelta(hours=1)
USD = CurrencyRates([("USD", date(2020, 1, 1), Decimal("1.00"))])


class Pipeline:
    """Decode each record as the agent does and apply it to the core (orders partition 0)."""

    def __init__(self) -> None:
        self.clock = FakeClock(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
        self.cdc = CdcRecords(self.clock)
        self.decoder = self.cdc.decoder()
        self.core = AnalyticsCore(Settings(), USD)
        self.core.assign([0])
        self.lsn = 1_000

    def feed(self, *records: InputRecord) -> None:
        for record in records:
            event = self.decoder.decode(record.key, record.value, record.headers)
            assert isinstance(event, ChangeEvent)
            self.core.apply(record.partition, event)

    def order(
        self, op: str, order_id: int, customer: int, status: str, total: str, **kw: object
    ) -> InputRecord:
        self.lsn += 64
        after = order_row(order_id, customer, status, total, **kw)  # type: ignore[arg-type]
        return self.cdc.change("orders", op, after=after, lsn=self.lsn, committed=self.clock.now())

    def insert(self, table: str, row: dict[str, object], committed: datetime) -> InputRecord:
        self.lsn += 8
        return self.cdc.change(table, "c", after=row, lsn=self.lsn, committed=committed)

    def tick(self) -> AnalyticsOutputs:
        self.core.tick(self.clock.now())
        return self.core.drain()


def hourly(
    start: datetime, revenue: str, count: int, version: int, **flags: bool
) -> HourlyRevenueRow:
    average = (Decimal(revenue) / count).quantize(Decimal("0.01")) if count else None
    return HourlyRevenueRow(
        start,
        start + timedelta(hours=1),
        "USD",
        Decimal(revenue),
        count,
        average,
        flags.get("final", False),
        version,
        flags.get("correction", False),
    )


def test_windows_close_when_the_watermark_passes_end_plus_grace_then_corrections_follow() -> None:
    p = Pipeline()
    p.feed(
        p.order("c", 1, 7, "CONFIRMED", "100.00", created=T10 + timedelta(minutes=10)),
        p.order("c", 2, 7, "CONFIRMED", "50.00", created=T10 + timedelta(minutes=40)),
        p.order("c", 4, 7, "PENDING", "999.00", created=T10 + timedelta(minutes=41)),
    )
    assert p.tick().hourly == [hourly(T10, "100.00", 1, 1), hourly(T10, "150.00", 2, 2)]

    # 11:04 is within the 5-minute grace: the 10:00 window stays open
    p.feed(p.order("c", 3, 8, "CONFIRMED", "20.00", created=T11 + timedelta(minutes=4)))
    assert p.tick().hourly == [hourly(T11, "20.00", 1, 1)]

    # 11:06 passes 11:00 + 5 min: the 10:00 window closes (final, a new version)
    p.feed(p.order("c", 5, 8, "CONFIRMED", "30.00", created=T11 + timedelta(minutes=6)))
    assert p.tick().hourly == [hourly(T11, "50.00", 2, 2), hourly(T10, "150.00", 2, 3, final=True)]

    # a cancellation of order 1 after the close is a correction of the final window
    p.feed(
        p.order(
            "u",
            1,
            7,
            "CANCELLED",
            "100.00",
            created=T10 + timedelta(minutes=10),
            updated=T11 + timedelta(minutes=7),
            version=2,
        )
    )
    outputs = p.tick()
    assert outputs.hourly == [hourly(T10, "50.00", 1, 4, final=True, correction=True)]
    assert outputs.late == []


def test_a_change_to_a_window_beyond_retention_is_a_late_event_not_a_revenue_row() -> None:
    p = Pipeline()
    p.feed(p.order("c", 1, 7, "CONFIRMED", "10.00", created=T10))
    p.tick()
    old = datetime(2026, 1, 20, 10, 30, tzinfo=UTC)  # its window ended 41 days before
    record = p.order(
        "c", 9, 9, "CONFIRMED", "75.00", created=old, updated=T10 + timedelta(minutes=1)
    )
    p.feed(record)

    outputs = p.tick()
    assert outputs.hourly == []
    assert outputs.late == [
        LateEvent(
            9,
            datetime(2026, 1, 20, 10, 0, tzinfo=UTC),
            datetime(2026, 1, 20, 11, 0, tzinfo=UTC),
            "USD",
            T10 + timedelta(minutes=1),
            p.lsn,
        )
    ]


def test_an_older_copy_read_after_a_late_change_is_not_applied_again() -> None:
    """The chaos soak: a duplicated batch put an order's older change behind its newer,
    late one; with no position kept for an order beyond retention the copy was applied
    again, and the customer's lifetime features lost the order (7 orders against 8)."""
    p = Pipeline()
    old = datetime(2026, 1, 20, 10, 30, tzinfo=UTC)
    pending = p.order("c", 9, 9, "PENDING", "75.00", created=old, updated=T10)
    confirmed = p.order(
        "u", 9, 9, "CONFIRMED", "75.00", created=old, updated=T10 + timedelta(minutes=1)
    )
    p.feed(pending, confirmed)
    first = p.tick()
    assert len(first.late) == 2
    (features,) = first.features
    assert features.values.lifetime_order_count == 1
    p.feed(pending)  # the duplicated batch
    again = p.tick()
    assert again.late == []
    assert again.features == []  # still one lifetime order: nothing to publish


def test_customer_features_follow_orders_items_and_categories_and_age_out_with_the_clock() -> None:
    p = Pipeline()
    created = T10 + timedelta(minutes=40)
    p.feed(
        p.insert("categories", category_row(2, "Lighting", updated=T10), T10),
        p.insert("categories", category_row(3, "Garden", updated=T10), T10),
        p.insert("products", product_row(5, 2, "25.00", updated=T10), T10),
        p.insert("products", product_row(6, 3, "5.00", updated=T10), T10),
        p.order("c", 1, 7, "CONFIRMED", "100.00", created=T10 + timedelta(minutes=10)),
        p.order("c", 2, 7, "CONFIRMED", "60.00", created=created),
        p.insert("order_items", item_row(21, 2, 5, 2, "25.00", created=created), created),
        p.insert("order_items", item_row(22, 2, 6, 2, "5.00", created=created), created),
    )
    (features,) = p.tick().features
    assert (features.customer_id, features.feature_version) == (7, 1)
    assert features.features_updated_at == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    # Lighting: 2 x 25.00 = 50.00 beats Garden: 2 x 5.00 = 10.00
    assert features.values == FeatureValues(
        2, Decimal("160.00"), Decimal("80.00"), "Lighting", 2, Decimal("160.00"), "NEW"
    )

    # 30 days on, both orders left the look-back; lifetime values stay
    p.clock.advance(timedelta(days=30))
    (aged,) = p.tick().features
    assert aged.feature_version == 2
    assert aged.values == FeatureValues(0, Decimal("0.00"), None, None, 2, Decimal("160.00"), "NEW")
    assert p.tick().features == []  # nothing changed since
