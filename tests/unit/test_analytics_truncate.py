"""A TRUNCATE in the analytics core: every row below its LSN withdrawn, later rows kept,
pre-truncate changes read after it dropped, whatever the partitions' interleaving
(docs/decisions/0021). Expected values are computed by hand."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from config.settings import Settings
from records.change_events import ChangeEvent, Operation, SourcePosition
from tables.analytics import AnalyticsCore, AnalyticsState
from tables.features import CurrencyRates
from tables.state_codec import decode, encode

NOW = datetime.now(UTC).replace(microsecond=0)
H = NOW.replace(minute=0, second=0) - timedelta(hours=5)  # an hour well inside retention
RATES = CurrencyRates([("EUR", date(2000, 1, 1), Decimal("2.00"))])

Step = tuple[int, ChangeEvent]  # (partition, event)


def change(table: str, lsn: int, row: dict[str, Any] | None = None, **key: int) -> ChangeEvent:
    op = Operation.TRUNCATE if not key else Operation.CREATE if row else Operation.DELETE
    after = None if row is None else {**key, **row, "updated_at": NOW}
    return ChangeEvent(
        op=op,
        schema="public",
        table=table,
        key=key or None,
        before=None,
        after=after,
        position=SourcePosition(lsn, lsn, None, None, "false"),
        committed_at=NOW,
    )


def order(lsn: int, order_id: int, amount: str, customer: int = 7) -> Step:
    row = {
        "customer_id": customer,
        "status": "CONFIRMED",
        "currency": "EUR",
        "total_amount": Decimal(amount),
        "created_at": H + timedelta(minutes=order_id),
    }
    return order_id % 3, change("orders", lsn, row, order_id=order_id)


def item(lsn: int, item_id: int, order_id: int, product: int) -> Step:
    row = {"order_id": order_id, "product_id": product, "quantity": 1, "unit_price": Decimal(1)}
    return item_id % 3, change("order_items", lsn, row, order_item_id=item_id)


def product(lsn: int, product_id: int, category: int) -> Step:
    return product_id % 3, change("products", lsn, {"category_id": category}, product_id=product_id)


def category(lsn: int, category_id: int, name: str) -> Step:
    return category_id % 3, change("categories", lsn, {"name": name}, category_id=category_id)


def truncate(table: str, lsn: int) -> Step:
    return 0, change(table, lsn)


def run(steps: Iterable[Step], state: AnalyticsState | None = None) -> AnalyticsCore:
    core = AnalyticsCore(Settings(), RATES, state)
    core.assign([0, 1, 2])
    for partition, event in steps:
        core.apply(partition, event)
    core.tick(NOW)
    return core


def revenue(core: AnalyticsCore) -> dict[str, tuple[Decimal, int]]:
    return {k: (w.revenue, w.order_count) for k, w in core.state.windows.items() if w.order_count}


def features(core: AnalyticsCore) -> dict[int, tuple[int, Decimal, str | None]]:
    return {
        c: (f.values.lifetime_order_count, f.values.lifetime_value, f.values.preferred_category)
        for c, f in core.state.features.items()
    }


CATALOGUE = [category(1, 1, "Books"), category(2, 2, "Games"), product(3, 10, 1)]
BEFORE = [order(10, 1, "10.00"), order(11, 2, "20.00", customer=8), item(12, 100, 1, 10)]
# After the truncate at LSN 30: order 3 (read first, from another partition) and order 5;
# order 4's change from before the truncate is read only after it.
AFTER = [order(40, 3, "3.00"), order(50, 5, "5.00"), product(41, 11, 2), item(42, 101, 3, 11)]
LATE_BEFORE = [order(25, 4, "400.00"), item(26, 102, 4, 10)]


def test_truncate_of_orders_withdraws_what_came_before_it_and_keeps_what_came_after() -> None:
    core = run([*CATALOGUE, *BEFORE])
    assert features(core) == {7: (1, Decimal("20.00"), "Books"), 8: (1, Decimal("40.00"), None)}
    core.drain()
    steps = [AFTER[0], truncate("orders", 30), truncate("order_items", 31)]
    core = run([*steps, *LATE_BEFORE, *AFTER[1:]], core.state)
    # By hand: only orders 3 and 5 remain (3.00 + 5.00 EUR; x2 USD), order 3's item in Games.
    assert list(revenue(core).values()) == [(Decimal("8.00"), 2)]
    assert features(core) == {7: (2, Decimal("16.00"), "Games"), 8: (0, Decimal("0.00"), None)}
    assert sorted(core.state.orders) == [3, 5]
    assert core.state.truncations == {"orders": 30, "order_items": 31}
    assert 1 not in core.state.contributions  # withdrawn: the barrier guards it from now on
    emitted = core.drain()
    assert {f.customer_id for f in emitted.features} == {7, 8}
    assert emitted.hourly[-1].revenue == Decimal("8.00")


def test_every_interleaving_of_the_partitions_gives_the_same_state() -> None:
    """The truncate travels on one partition, the rows on all: any order of reading in
    which each partition keeps its own order must end alike (a replay reads differently)."""
    streams: dict[int, list[ChangeEvent]] = {0: [], 1: [], 2: []}
    for partition, event in [
        *BEFORE,
        order(25, 4, "400.00"),
        truncate("orders", 30),
        truncate("order_items", 31),
        *AFTER,
    ]:
        streams[partition].append(event)
    results = set()
    for first, second, third in itertools.permutations(streams):
        steps = [(p, e) for p in (first, second, third) for e in streams[p]]
        core = run([*CATALOGUE, *steps])
        results.add((tuple(sorted(revenue(core).items())), tuple(sorted(features(core).items()))))
    assert len(results) == 1
    ((windows, customers),) = results
    assert [v for _, v in windows] == [(Decimal("8.00"), 2)]
    assert dict(customers)[7] == (2, Decimal("16.00"), "Games")


def test_a_truncate_read_again_after_a_restart_changes_nothing() -> None:
    """The state as the changelog holds it (every entry through the codec), then the
    records after the last flush read again: the same state, nothing emitted."""
    steps = [*CATALOGUE, *BEFORE, truncate("orders", 30), truncate("order_items", 31), *AFTER]
    core = run(steps)
    core.drain()
    restored = AnalyticsState(
        **{
            name: {decode(encode(k)): decode(encode(v)) for k, v in table.items()}
            for name, table in vars(core.state).items()
        }
    )
    again = run([*steps[3:], *LATE_BEFORE], restored)
    assert revenue(again) == revenue(core)
    assert vars(again.state) == vars(core.state)
    assert not again.drain().hourly


def test_truncated_products_and_categories_leave_no_preferred_category() -> None:
    core = run([*CATALOGUE, *BEFORE])
    core.drain()
    steps = [truncate("categories", 30), truncate("products", 31), category(5, 1, "Old")]
    core = run(steps, core.state)
    assert features(core)[7] == (1, Decimal("20.00"), None)
    assert core.state.categories == {}
    assert core.state.products == {}
    # A category made after the truncate names the spend again.
    core = run([category(40, 3, "New"), product(41, 10, 3)], core.state)
    assert features(core)[7] == (1, Decimal("20.00"), "New")
