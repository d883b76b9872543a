"""Hourly revenue per currency with retractions by order id (DESIGN.md section 8).

Each order holds at most one *contribution*: its amount in the tumbling hour of its
``created_at`` while it is revenue-bearing. A change replaces the order's contribution
(subtract the old, add the new), so duplicates and re-snapshots change nothing and a
cancellation or delete retracts exactly what the order added. Changes older than the
order's stored source LSN are ignored (a replay after a crash).

A window is final once the watermark passes ``end + grace``; a change to a final window
within retention is emitted as a correction (``is_correction``); a change to a window
beyond retention is not applied and becomes a ``LateEvent``. "Beyond retention" is judged
by the change's own time in the source (``end + retention <= changed_at``: the row's
``updated_at``, the commit time for a hard delete), never by the watermark at the moment
it is processed: a replay after a restart grows its watermark differently from the live
run, and a change must be late (or not) on every path alike (docs/decisions/0020). Every
emitted row carries the window's version, which only grows. State lives in two mappings
the caller supplies (plain dicts in tests, the changelog-backed tables in the worker); the
watermark is the caller's ``Watermarks``.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from tables.orders import OrderRow, to_cents
from tables.windows import Watermarks, Window, is_beyond_retention, is_final, tumbling_window

ZERO = Decimal("0.00")


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one order currently adds; ``amount`` None: it adds nothing (kept for the LSN)."""

    window_start: datetime | None
    currency: str | None
    amount: Decimal | None
    lsn: int | None


@dataclass(frozen=True, slots=True)
class WindowTotals:
    window_start: datetime
    window_end: datetime
    currency: str
    revenue: Decimal
    order_count: int
    version: int
    is_final: bool = False


@dataclass(frozen=True, slots=True)
class HourlyRevenueRow:
    """One versioned upsert of ``hourly-revenue`` / ``gold.hourly_revenue``."""

    window_start: datetime
    window_end: datetime
    currency: str
    revenue: Decimal
    order_count: int
    avg_order_value: Decimal | None
    is_final: bool
    version: int
    is_correction: bool = False


@dataclass(frozen=True, slots=True)
class LateEvent:
    """A change to a window beyond retention: not applied, published to ``late-events``.

    ``identity`` names the change, not the publication: a replay publishing it again
    (after a crash, or with the state lost) gives the same identity, so a consumer keyed
    on it counts each change once.
    """

    order_id: int
    window_start: datetime
    window_end: datetime
    currency: str
    changed_at: datetime
    lsn: int | None

    @property
    def identity(self) -> str:
        """``<order id>|<window start ISO>|<currency>|<source LSN>``: the record key."""
        lsn = "" if self.lsn is None else str(self.lsn)
        return f"{self.order_id}|{window_key(self.window_start, self.currency)}|{lsn}"


@dataclass(frozen=True, slots=True)
class RevenueChange:
    rows: tuple[HourlyRevenueRow, ...] = ()
    late: tuple[LateEvent, ...] = ()


def window_key(start: datetime, currency: str) -> str:
    """The state and topic key of one window: ``<start ISO>|<currency>``."""
    return f"{start.isoformat()}|{currency}"


def row_of(totals: WindowTotals, *, correction: bool = False) -> HourlyRevenueRow:
    average = to_cents(totals.revenue / totals.order_count) if totals.order_count else None
    return HourlyRevenueRow(
        totals.window_start,
        totals.window_end,
        totals.currency,
        totals.revenue,
        totals.order_count,
        average,
        totals.is_final,
        totals.version,
        correction,
    )


class HourlyRevenue:
    """Applies order changes to hourly windows; emits versioned rows and late events."""

    def __init__(
        self,
        *,
        size: timedelta,
        grace: timedelta,
        retention: timedelta,
        watermarks: Watermarks,
        contributions: MutableMapping[int, Contribution] | None = None,
        windows: MutableMapping[str, WindowTotals] | None = None,
        window_orders: MutableMapping[str, int] | None = None,
    ) -> None:
        self.size = size
        self.grace = grace
        self.retention = retention
        self.watermarks = watermarks
        self.contributions: MutableMapping[int, Contribution] = (
            {} if contributions is None else contributions
        )
        self.windows: MutableMapping[str, WindowTotals] = {} if windows is None else windows
        #: ``"<window key>#<order id>" -> order id`` for every contribution with a window:
        #: forgetting a window finds its orders without reading every contribution (the
        #: worker keeps both in its state folder, issue 23). An entry may outlive its
        #: order's move to another window; ``_forget`` checks.
        self.window_orders: MutableMapping[str, int] = (
            {} if window_orders is None else window_orders
        )

    def _set(self, order_id: int, contribution: Contribution) -> None:
        self.contributions[order_id] = contribution
        if contribution.window_start is not None and contribution.currency is not None:
            key = window_key(contribution.window_start, contribution.currency)
            self.window_orders[f"{key}#{order_id}"] = order_id

    def recover(self) -> None:
        """After a restart: index the contributions when the state has no index (a
        changelog written before it was kept); a scan, once."""
        if next(iter(self.window_orders), None) is None:
            for order_id, contribution in list(self.contributions.items()):
                self._set(order_id, contribution)

    # -- changes ---------------------------------------------------------------------------
    def replayed(self, order_id: int, lsn: int | None) -> bool:
        """True when a change of the order at ``lsn`` is older than the one already applied."""
        old = self.contributions.get(order_id)
        return old is not None and lsn is not None and old.lsn is not None and lsn < old.lsn

    def apply(
        self,
        order_id: int,
        row: OrderRow | None,
        lsn: int | None = None,
        changed_at: datetime | None = None,
    ) -> RevenueChange:
        """The order is now ``row`` (None: hard-deleted), a change made at ``changed_at`` in
        the source. Returns the rows (or late events) to emit.

        Without ``changed_at`` (unit tests of the window algebra) lateness falls back to
        the current watermark; the analytics core always passes the change's time.
        """
        old = self.contributions.get(order_id)
        if self.replayed(order_id, lsn):
            return RevenueChange()  # an older change replayed: the state already has newer
        new = self._contribution(row, lsn)
        watermark = self.watermarks.current()
        late = self._late(order_id, (old, new), lsn, changed_at or watermark)
        if late:  # before the "unchanged" test: late or not must not depend on the state
            # The windows keep what they held, but the order's position moves on: a copy of
            # an older change read after this one (a duplicated batch, a re-snapshot) must
            # be recognised as replayed, not applied over it.
            self._set(order_id, _moved_to(old, lsn))
            return RevenueChange(late=late)
        if old is not None and _same(old, new):
            self._set(order_id, new)
            return RevenueChange()
        deltas: dict[str, tuple[Decimal, int]] = {}
        if old is not None and old.amount is not None:
            _add(deltas, old, -old.amount, -1)
        if new.amount is not None:
            _add(deltas, new, new.amount, 1)
        self._set(order_id, new)
        rows = []
        for key, (amount, count) in deltas.items():
            if amount == 0 and count == 0:
                continue
            rows.append(self._move(key, amount, count, watermark))
        return RevenueChange(rows=tuple(rows))

    def _late(
        self,
        order_id: int,
        contributions: tuple[Contribution | None, Contribution],
        lsn: int | None,
        moment: datetime | None,
    ) -> tuple[LateEvent, ...]:
        """One late event per window (old or new) of the change that is beyond retention at
        ``moment``; bearing or not, so a late cancellation is reported like a late sale."""
        if moment is None:
            return ()
        windows = dict.fromkeys(
            (c.window_start, c.currency)
            for c in contributions
            if c is not None and c.window_start is not None and c.currency is not None
        )
        return tuple(
            LateEvent(order_id, start, start + self.size, currency, moment, lsn)
            for start, currency in windows
            if start is not None
            and currency is not None
            and is_beyond_retention(self._window(start), moment, self.retention)
        )

    def _contribution(self, row: OrderRow | None, lsn: int | None) -> Contribution:
        if row is None:
            return position_only(lsn)
        start = tumbling_window(row.created_at, self.size).start
        amount = row.total_amount if row.revenue_bearing else None
        return Contribution(start, row.currency, amount, lsn)

    def _window(self, start: datetime) -> Window:
        return Window(start, start + self.size)

    def _move(
        self, key: str, amount: Decimal, count: int, watermark: datetime | None
    ) -> HourlyRevenueRow:
        start_text, currency = key.rsplit("|", 1)
        start = datetime.fromisoformat(start_text)
        current = self.windows.get(key) or WindowTotals(
            start, start + self.size, currency, ZERO, 0, 0
        )
        final = current.is_final or is_final(self._window(start), watermark, self.grace)
        updated = replace(
            current,
            revenue=current.revenue + amount,
            order_count=current.order_count + count,
            version=current.version + 1,
            is_final=final,
        )
        self.windows[key] = updated
        return row_of(updated, correction=current.is_final)

    # -- time ----------------------------------------------------------------------------------
    def advance(self, *, forget: bool = True, forget_orders: int | None = None) -> RevenueChange:
        """Mark windows final that the watermark has closed; forget those beyond retention
        (``forget=False``: keep them, e.g. until a replay's rebuilt windows were compared
        with gold and written: a window rebuilt by replay may never have been published).

        ``forget_orders`` bounds one call's forgetting: whole windows, oldest first, until
        that many of their orders were reduced to positions; the rest wait for the next
        call, as if the watermark had come later. The first tick after a replay of 40 days
        forgets five days of windows at once: 250,000 changed entries in one commit and
        300 MB of the worker's peak at a million orders (issue 23)."""
        watermark = self.watermarks.current()
        if watermark is None:
            return RevenueChange()
        rows = []
        expired = []
        # Forgotten a grace period after the edge: a change made just before the edge may
        # still be on its way (a heartbeat can advance an idle partition past it first).
        forget_at = watermark - self.grace
        for key, totals in list(self.windows.items()):
            window = Window(totals.window_start, totals.window_end)
            if forget and is_beyond_retention(window, forget_at, self.retention):
                expired.append(key)
            elif not totals.is_final and is_final(window, watermark, self.grace):
                updated = replace(totals, is_final=True, version=totals.version + 1)
                self.windows[key] = updated
                rows.append(row_of(updated))
        if expired:
            self._forget(sorted(expired), forget_orders)
        return RevenueChange(rows=tuple(rows))

    def forgetting(self) -> bool:
        """Windows beyond retention wait to be forgotten (a bounded ``advance`` left them)."""
        watermark = self.watermarks.current()
        if watermark is None:
            return False
        forget_at = watermark - self.grace
        return any(
            is_beyond_retention(Window(t.window_start, t.window_end), forget_at, self.retention)
            for t in self.windows.values()
        )

    def _forget(self, keys: list[str], limit: int | None) -> None:
        """Drop windows beyond retention (oldest first, up to ``limit`` orders after the
        first window). Their orders keep a position only (no window, no amount): without it
        an older copy of a change read later would pass ``replayed`` and be applied over a
        newer one (the chaos soak saw a customer's features lose an order). One small entry
        per order, as the features already keep every order."""
        reduced = 0
        for key, entries in self._indexed(keys):
            if limit is not None and reduced >= limit:
                return
            del self.windows[key]
            for entry in entries:
                order_id = self.window_orders.pop(entry)
                contribution = self.contributions.get(order_id)
                if (
                    contribution is not None
                    and contribution.window_start is not None
                    and contribution.currency is not None
                    and window_key(contribution.window_start, contribution.currency) == key
                ):
                    self.contributions[order_id] = position_only(contribution.lsn)
            reduced += len(entries)

    def _indexed(self, keys: list[str]) -> Iterator[tuple[str, list[str]]]:
        """Each window of ``keys`` with its index entries: a range read per window from a
        stored index (read when its turn comes), one scan of a plain mapping."""
        index = self.window_orders
        if hasattr(index, "keys_with_prefix"):
            for key in keys:
                yield key, index.keys_with_prefix(f"{key}#")
            return
        wanted: dict[str, list[str]] = {key: [] for key in keys}
        for entry in index:
            found = wanted.get(entry.rsplit("#", 1)[0])
            if found is not None:
                found.append(entry)
        yield from wanted.items()

    def snapshot(self) -> list[HourlyRevenueRow]:
        """Every window's current row (re-published on start: the sinks are idempotent)."""
        return [row_of(totals) for totals in self.windows.values()]


def position_only(lsn: int | None) -> Contribution:
    """An order that adds to no window, kept for its LSN (the replay guard)."""
    return Contribution(None, None, None, lsn)


def _moved_to(old: Contribution | None, lsn: int | None) -> Contribution:
    """``old`` (or no contribution) at the newer position ``lsn``."""
    if old is None:
        return position_only(lsn)
    if lsn is None or (old.lsn is not None and old.lsn > lsn):
        return old
    return replace(old, lsn=lsn)


def _same(old: Contribution, new: Contribution) -> bool:
    return (old.window_start, old.currency, old.amount) == (
        new.window_start,
        new.currency,
        new.amount,
    )


def _add(deltas: dict[str, tuple[Decimal, int]], c: Contribution, amount: Decimal, n: int) -> None:
    if c.window_start is None or c.currency is None:  # only a hard delete has no window
        return
    key = window_key(c.window_start, c.currency)
    total, count = deltas.get(key, (ZERO, 0))
    deltas[key] = (total + amount, count + n)
