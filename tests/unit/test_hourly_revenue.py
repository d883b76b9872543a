"""Hourly revenue with retractions: hand-computed cases (DESIGN.md section 8)."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from tables.orders import OrderRow
from tables.revenue import Contribution, HourlyRevenue, position_only, window_key
from tables.tracked import Dirty
from tables.windows import Watermarks
from tests.unit.state_folder import commit, state_folder, stored_tables

H10 = datetime(2026, 3, 1, 10, tzinfo=UTC)


def order(order_id: int, amount: str, status: str = "CONFIRMED", minute: int = 15) -> OrderRow:
    return OrderRow(order_id, 7, status, "EUR", Decimal(amount), H10 + timedelta(minutes=minute))


def engine(
    contributions: MutableMapping[int, Contribution] | None = None,
    window_orders: MutableMapping[str, int] | None = None,
) -> tuple[HourlyRevenue, Watermarks]:
    marks = Watermarks()
    marks.assign(0)
    revenue = HourlyRevenue(
        size=timedelta(hours=1),
        grace=timedelta(minutes=5),
        retention=timedelta(days=35),
        watermarks=marks,
        contributions=contributions,
        window_orders=window_orders,
    )
    return revenue, marks


def totals(revenue: HourlyRevenue) -> tuple[Decimal, int]:
    window = revenue.windows[window_key(H10, "EUR")]
    return window.revenue, window.order_count


def test_revenue_sums_bearing_orders_and_averages_to_the_cent() -> None:
    revenue, _ = engine()
    revenue.apply(1, order(1, "10.00"), lsn=1)
    revenue.apply(2, order(2, "20.01"), lsn=2)
    change = revenue.apply(3, order(3, "5.00", status="PENDING"), lsn=3)
    assert change.rows == ()
    row = revenue.snapshot()[0]
    assert (row.revenue, row.order_count, row.avg_order_value) == (
        Decimal("30.01"),
        2,
        Decimal("15.01"),  # 15.005 rounds half up
    )
    assert row.version == 2


def test_duplicate_and_resnapshot_events_change_nothing() -> None:
    revenue, _ = engine()
    revenue.apply(1, order(1, "10.00"), lsn=5)
    assert revenue.apply(1, order(1, "10.00"), lsn=5).rows == ()  # duplicate delivery
    assert revenue.apply(1, order(1, "10.00"), lsn=9).rows == ()  # re-snapshot, same row
    assert revenue.apply(1, order(1, "99.00"), lsn=3).rows == ()  # older change replayed
    assert totals(revenue) == (Decimal("10.00"), 1)


def test_amount_edit_and_delete_move_the_contribution() -> None:
    revenue, _ = engine()
    revenue.apply(1, order(1, "10.00"), lsn=1)
    revenue.apply(2, order(2, "4.00"), lsn=2)
    revenue.apply(1, order(1, "12.50"), lsn=3)
    assert totals(revenue) == (Decimal("16.50"), 2)
    deleted = OrderRow(2, 7, "CONFIRMED", "EUR", Decimal("4.00"), H10, deleted=True)
    revenue.apply(2, deleted, lsn=4)
    assert totals(revenue) == (Decimal("12.50"), 1)
    revenue.apply(1, None, lsn=5)  # hard delete
    assert totals(revenue) == (Decimal("0.00"), 0)
    assert revenue.snapshot()[0].avg_order_value is None


def test_out_of_order_within_grace_is_exact_and_not_a_correction() -> None:
    revenue, marks = engine()
    marks.observe(0, H10 + timedelta(minutes=50))
    revenue.apply(1, order(1, "10.00"), lsn=1)
    marks.observe(0, H10 + timedelta(hours=1, minutes=4))  # past the end, within grace
    change = revenue.apply(2, order(2, "5.00", minute=5), lsn=2)
    assert [(r.revenue, r.is_final, r.is_correction) for r in change.rows] == [
        (Decimal("15.00"), False, False)
    ]
    marks.observe(0, H10 + timedelta(hours=1, minutes=5))
    final = revenue.advance().rows
    assert [(r.revenue, r.order_count, r.is_final, r.version) for r in final] == [
        (Decimal("15.00"), 2, True, 3)
    ]
    assert revenue.advance().rows == ()  # final is emitted once


def test_cancellation_after_window_close_produces_a_correction() -> None:
    revenue, marks = engine()
    revenue.apply(1, order(1, "10.00"), lsn=1)
    revenue.apply(2, order(2, "30.00"), lsn=2)
    marks.observe(0, H10 + timedelta(hours=3))
    (final,) = revenue.advance().rows
    assert (final.revenue, final.is_final, final.version) == (Decimal("40.00"), True, 3)
    (correction,) = revenue.apply(2, order(2, "30.00", status="CANCELLED"), lsn=3).rows
    assert correction.is_correction
    assert correction.is_final
    assert (correction.revenue, correction.order_count, correction.version) == (
        Decimal("10.00"),
        1,
        4,
    )


def test_change_beyond_retention_goes_to_late_events_and_is_not_applied() -> None:
    revenue, marks = engine()
    revenue.apply(1, order(1, "10.00"), lsn=1)
    marks.observe(0, H10 + timedelta(days=35, hours=1))  # window end + 35 days
    change = revenue.apply(1, order(1, "10.00", status="CANCELLED"), lsn=2)
    assert change.rows == ()
    (late,) = change.late
    assert (late.order_id, late.window_start, late.currency) == (1, H10, "EUR")
    assert totals(revenue) == (Decimal("10.00"), 1)
    new = revenue.apply(9, order(9, "1.00"), lsn=3)  # a first sight of a too-old order
    assert new.rows == ()
    assert len(new.late) == 1
    revenue.advance()
    assert totals(revenue) == (Decimal("10.00"), 1)  # kept for a grace period after the edge
    marks.observe(0, H10 + timedelta(days=35, hours=1, minutes=5))
    revenue.advance()
    assert revenue.windows == {}
    # Only each order's position is kept (no window, no amount): the replay guard.
    assert revenue.contributions == {
        1: Contribution(None, None, None, 2),
        9: Contribution(None, None, None, 3),
    }


def test_an_older_copy_of_a_change_beyond_retention_is_replayed_not_applied() -> None:
    """The chaos soak: a duplicated batch (or a re-snapshot) put an older change of an
    order behind a newer one after the order's window had left retention; the order's
    position had gone with the window, so the copy passed as new and the customer's
    features went back to it. The position now outlives the window."""
    revenue, marks = engine()
    revenue.apply(1, order(1, "10.00", status="PENDING"), lsn=1)
    revenue.apply(1, order(1, "10.00"), lsn=2)
    marks.observe(0, H10 + timedelta(days=35, hours=1, minutes=5))
    revenue.advance()
    assert revenue.windows == {}
    assert revenue.replayed(1, 1)  # the PENDING copy read again
    assert not revenue.replayed(1, 3)
    late = revenue.apply(1, order(1, "10.00", status="CANCELLED"), lsn=4)  # a real late change
    assert len(late.late) == 1
    assert revenue.replayed(1, 3)  # a copy of anything before it, even never seen, is old
    stale = revenue.apply(1, order(1, "10.00"), lsn=2)
    assert stale.late == ()
    assert stale.rows == ()


def test_currencies_have_separate_windows() -> None:
    revenue, _ = engine()
    revenue.apply(1, order(1, "10.00"), lsn=1)
    usd = OrderRow(2, 7, "SHIPPED", "USD", Decimal("3.00"), H10)
    revenue.apply(2, usd, lsn=2)
    assert sorted((r.currency, r.revenue) for r in revenue.snapshot()) == [
        ("EUR", Decimal("10.00")),
        ("USD", Decimal("3.00")),
    ]


EDGE = H10 + timedelta(hours=1) + timedelta(days=35)  # the window's end plus retention


def test_lateness_is_judged_by_the_change_time_not_the_watermark() -> None:
    revenue, marks = engine()
    # First start: no watermark yet, but the change was made after the window left retention.
    first = revenue.apply(1, order(1, "10.00"), lsn=1, changed_at=EDGE)
    assert first.rows == ()
    ((late,),) = (first.late,)
    assert (late.order_id, late.window_start, late.changed_at) == (1, H10, EDGE)
    # A replay with the watermark far ahead: a change made within retention is applied.
    marks.observe(0, EDGE + timedelta(days=3))
    within = revenue.apply(2, order(2, "4.00"), lsn=2, changed_at=EDGE - timedelta(seconds=1))
    assert [r.revenue for r in within.rows] == [Decimal("4.00")]
    assert within.late == ()


def test_late_change_keeps_its_identity_when_seen_again_and_is_never_applied() -> None:
    revenue, _ = engine()
    revenue.apply(1, order(1, "10.00"), lsn=1, changed_at=H10 + timedelta(days=1))
    cancel = order(1, "10.00", status="CANCELLED")
    once = revenue.apply(1, cancel, lsn=7, changed_at=EDGE)
    again = revenue.apply(1, cancel, lsn=7, changed_at=EDGE)  # replayed after a crash
    assert [e.identity for e in once.late] == [e.identity for e in again.late]
    assert once.late[0].identity == f"1|{H10.isoformat()}|EUR|7"
    assert totals(revenue) == (Decimal("10.00"), 1)  # the cancellation came too late
    # An unchanged row beyond retention is still reported: late or not never depends on
    # whether the window is still held.
    assert len(revenue.apply(1, order(1, "10.00"), lsn=8, changed_at=EDGE).late) == 1


def test_advance_without_forgetting_keeps_windows_beyond_retention() -> None:
    revenue, marks = engine()
    revenue.apply(1, order(1, "10.00"), lsn=1, changed_at=H10 + timedelta(minutes=20))
    marks.observe(0, EDGE)
    (final,) = revenue.advance(forget=False).rows
    assert final.is_final
    assert totals(revenue) == (Decimal("10.00"), 1)
    marks.observe(0, EDGE + timedelta(minutes=5))  # plus the grace period
    revenue.advance()
    assert revenue.windows == {}


def test_forgetting_a_window_leaves_positions_only_through_a_stored_index(tmp_path: Path) -> None:
    """The worker keeps contributions and the window index in its state folder: forgetting
    a window reads that window's index range (committed and pending entries), not every
    contribution, and leaves exactly what the plain mappings leave."""
    with state_folder(tmp_path / "state") as folder:
        dirty: Dirty = set()
        tables = stored_tables(folder, dirty, "contributions", "window_orders")
        stored, stored_marks = engine(tables["contributions"], tables["window_orders"])
        plain, plain_marks = engine()
        later = H10 + timedelta(hours=3)
        for revenue in (stored, plain):
            revenue.apply(1, order(1, "10.00"), lsn=1)
            revenue.apply(2, order(2, "5.00", status="PENDING"), lsn=2)
            revenue.apply(3, replace(order(3, "7.00"), created_at=later), lsn=3)
        commit(tables, folder, dirty)
        stored.apply(4, order(4, "1.00"), lsn=4)  # pending in the index at the forget
        plain.apply(4, order(4, "1.00"), lsn=4)
        edge = H10 + timedelta(hours=1, minutes=5, days=35)  # H10's window leaves retention
        for revenue, marks in ((stored, stored_marks), (plain, plain_marks)):
            marks.observe(0, edge)
            revenue.advance()
        assert dict(stored.contributions.items()) == dict(plain.contributions.items())
        assert {k: v for k, v in stored.contributions.items() if v.window_start is None} == {
            order_id: position_only(order_id) for order_id in (1, 2, 4)
        }
        assert sorted(stored.window_orders) == sorted(plain.window_orders)
        assert [k.rsplit("#", 1)[1] for k in stored.window_orders] == ["3"]


def test_bounded_forgetting_takes_whole_windows_oldest_first_and_ends_equal(
    tmp_path: Path,
) -> None:
    """Issue 23: a tick forgets windows beyond retention a bounded number of orders at a
    time (whole windows, the oldest first); when nothing is left to forget, contributions,
    index and windows equal those of one unbounded forget."""
    with state_folder(tmp_path / "state") as folder:
        dirty: Dirty = set()
        tables = stored_tables(folder, dirty, "contributions", "window_orders")
        bounded, bounded_marks = engine(tables["contributions"], tables["window_orders"])
        plain, plain_marks = engine()
        for revenue in (bounded, plain):
            for order_id in range(1, 10):  # hours 10, 11, 12: three orders each
                hour = timedelta(hours=(order_id - 1) // 3)
                created = order(order_id, f"{order_id}.00")
                revenue.apply(
                    order_id, replace(created, created_at=created.created_at + hour), lsn=order_id
                )
            revenue.apply(
                10, replace(order(10, "1.00"), created_at=H10 + timedelta(days=2)), lsn=10
            )
        commit(tables, folder, dirty)
        edge = H10 + timedelta(hours=3, minutes=5, days=35)  # hours 10-12 leave retention
        plain_marks.observe(0, edge)
        plain.advance()
        bounded_marks.observe(0, edge)
        held = []
        while bounded.forgetting():
            bounded.advance(forget_orders=2)  # one window of three orders at a time
            held.append(sorted(bounded.windows))
            commit(tables, folder, dirty)
        assert [len(keys) for keys in held] == [3, 2, 1]  # oldest first, one per call
        assert held[0][0].startswith((H10 + timedelta(hours=1)).isoformat())
        assert sorted(bounded.windows) == sorted(plain.windows)
        assert dict(bounded.contributions.items()) == dict(plain.contributions.items())
        assert sorted(bounded.window_orders) == sorted(plain.window_orders)
        assert not plain.forgetting()
