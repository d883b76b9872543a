"""The pure parts of the analytics changelog: change tracking and entry keys.

The store's Kafka and RocksDB side is exercised for real by
tests/faults/test_analytics_recovery.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from agents.analytics_state import (
    POSITION,
    ForeignStateError,
    check_own_state,
    entry_key,
    parse_key,
)
from config.settings import Settings
from streams.worker import analytics_service
from tables.analytics import AnalyticsCore
from tables.features import CurrencyRates
from tables.tracked import Dirty, TrackedTable
from tables.windows import Watermarks


def test_tracked_table_records_changes_only() -> None:
    dirty: Dirty = set()
    table: TrackedTable[int, Decimal] = TrackedTable("windows", dirty)
    table[1] = Decimal("1.00")
    assert dirty == {("windows", 1)}
    dirty.clear()
    table[1] = Decimal("1.0")  # equal value: not a change, nothing to write
    assert not dirty
    table.pop(1)
    assert dirty == {("windows", 1)}
    assert table.get(1) is None
    dirty.clear()
    table.load(2, Decimal(2))  # restored from the changelog: not a change
    table.load(3, None)
    assert dict(table) == {2: Decimal(2)}
    assert not dirty


def test_entry_keys_round_trip_and_keep_tables_apart() -> None:
    for table, key in (("orders", 7), ("windows", "2026-03-10T09:00:00+00:00|EUR")):
        assert parse_key(entry_key(table, key)) == (table, key)
    assert entry_key("orders", 7) != entry_key("features", 7)
    assert parse_key(entry_key(POSITION, "t|0")) == (POSITION, "t|0")


def test_watermark_progress_survives_a_restart() -> None:
    moment = datetime(2026, 3, 10, 9, tzinfo=UTC)
    core = AnalyticsCore(Settings(), CurrencyRates([]))
    core.assign([0, 1])
    core.watermarks.observe(0, moment)
    restarted = AnalyticsCore(Settings(), CurrencyRates([]))
    restarted.restore_progress(core.progress())
    assert restarted.progress() == core.progress() == {0: (moment, None), 1: (None, None)}
    assert restarted.watermarks.current() is None  # partition 1 still holds it back
    assert Watermarks().newest(0) is None


def test_analytics_views_bind_to_loopback_by_default() -> None:
    _, views = analytics_service(Settings())
    assert views.host == "127.0.0.1"


def test_state_of_another_pipeline_is_refused() -> None:
    ours = ["bvchaos0b.public.orders", "bvchaos0b.public.products"]
    check_own_state("x", {}, ours)  # a fresh changelog
    check_own_state("x", {("bvchaos0b.public.orders", 0): 12}, ours)
    with pytest.raises(ForeignStateError, match=r"bvchaos0a\.public\.orders"):
        check_own_state("x", {("bvchaos0a.public.orders", 0): 12}, ours)


def test_reconcile_writes_a_rebuilt_window_beyond_retention_that_gold_lacks() -> None:
    """First start: a window rebuilt by replay from changes made within retention, but
    beyond retention by now, was never published: reconcile emits it (it must not vanish);
    one gold already holds is not emitted again."""
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from config.settings import Settings
    from tables.analytics import AnalyticsCore
    from tables.orders import OrderRow
    from tables.revenue import WindowTotals, window_key

    start = datetime(2026, 1, 1, 10, tzinfo=UTC)
    core = AnalyticsCore(Settings(), {})
    core.assign([0])
    for order_id, hour in ((1, 0), (2, 1)):
        at = start + timedelta(hours=hour, minutes=5)
        row = OrderRow(order_id, 7, "CONFIRMED", "EUR", Decimal("5.00"), at)
        core.revenue.apply(order_id, row, lsn=order_id, changed_at=at)
    core.watermarks.observe(0, start + timedelta(days=40))
    stored = {
        window_key(start + timedelta(hours=1), "EUR"): WindowTotals(
            start + timedelta(hours=1),
            start + timedelta(hours=2),
            "EUR",
            Decimal("5.00"),
            1,
            4,
            is_final=True,
        )
    }
    core.reconcile(stored)
    (row,) = core.drain().hourly
    assert (row.window_start, row.revenue, row.is_final) == (start, Decimal("5.00"), True)


def test_reconcile_does_not_write_an_emptied_window_that_gold_lacks() -> None:
    """A replay that read an order and then its delete (or truncate) rebuilds a window with
    no order; a live run that read them in another order never made it, so gold lacks it.
    Absent and zero are the same answer: reconcile writes nothing (the analytics truncate
    stack test saw 7 such windows written by a replay as version 3)."""
    from tables.orders import OrderRow

    start = datetime(2026, 1, 1, 10, tzinfo=UTC)
    core = AnalyticsCore(Settings(), CurrencyRates([]))
    core.assign([0])
    at = start + timedelta(minutes=5)
    core.revenue.apply(
        1, OrderRow(1, 7, "CONFIRMED", "EUR", Decimal("5.00"), at), lsn=1, changed_at=at
    )
    core.revenue.apply(1, None, lsn=2, changed_at=at)
    core.watermarks.observe(0, start + timedelta(hours=3))
    core.reconcile({})
    assert core.drain().hourly == []
    assert core.state.windows  # still known to the state: a later order continues its version
