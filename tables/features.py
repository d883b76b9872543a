"""Customer features as of an injectable ``now`` (DESIGN.md section 8), amounts in USD.

Pure: ``compute_features`` is a function of a customer's orders and items, the product
catalogue, currency rates and ``now``. ``CustomerFeatureState`` keeps those inputs in
mappings the caller supplies (dicts in tests, Faust tables in the worker), marks customers
*dirty* when an input changes, and a periodic ``sweep(now)`` marks those whose orders aged
out of the look-back without any new event. ``emit(now)`` recomputes dirty customers and
returns only those whose values changed, each with the next ``feature_version``.

Money: an order's USD amount is ``round(total_amount * rate, 2)`` (half away from zero, the
rate valid on the order's UTC date); sums add rounded order amounts; averages are rounded
to cents. Preferred category: highest USD item spend over the look-back, then the larger
item count (sum of quantities), then the smaller category name.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from config.errors import PermanentError
from config.settings import SegmentRule
from tables.ageing import AgeingSchedule
from tables.orders import ItemRow, OrderRow, ProductRow, to_cents

ZERO = Decimal("0.00")

#: Dirty customers above which ``recompute_all`` sweeps every customer instead: a replay
#: marks the whole customer base, and a set of it grows with the customers (issue 23).
DIRTY_LIMIT = 50_000


class UnknownCurrencyRateError(PermanentError):
    """No row of ``ref.currency_rates`` covers a currency on an order's date."""


class CurrencyRates:
    """``ref.currency_rates``: the rate of a currency on a date is the latest ``valid_from``."""

    def __init__(self, rows: Iterable[tuple[str, date, Decimal]]) -> None:
        table: dict[str, list[tuple[date, Decimal]]] = {}
        for currency, valid_from, rate in rows:
            table.setdefault(currency.strip(), []).append((valid_from, Decimal(rate)))
        self._dates = {c: [d for d, _ in sorted(v)] for c, v in table.items()}
        self._rates = {c: [r for _, r in sorted(v)] for c, v in table.items()}

    def rate(self, currency: str, on: date) -> Decimal:
        dates = self._dates.get(currency)
        index = bisect.bisect_right(dates, on) - 1 if dates else -1
        if dates is None or index < 0:
            raise UnknownCurrencyRateError(
                f"no rate for {currency} on {on} in ref.currency_rates; add one"
            )
        return self._rates[currency][index]

    def to_usd(self, amount: Decimal, currency: str, on: date) -> Decimal:
        return to_cents(amount * self.rate(currency, on))


@dataclass(frozen=True, slots=True)
class FeatureValues:
    order_count_last_30_days: int
    total_spent_last_30_days: Decimal
    avg_order_value: Decimal | None
    preferred_category: str | None
    lifetime_order_count: int
    lifetime_value: Decimal
    lifetime_segment: str


@dataclass(frozen=True, slots=True)
class CustomerFeatures:
    """One versioned upsert of ``customer-features``, ``gold.customer_features`` and Redis."""

    customer_id: int
    values: FeatureValues
    features_updated_at: datetime
    feature_version: int
    as_of: datetime


def segment_of(orders: int, value: Decimal, rules: Iterable[SegmentRule], fallback: str) -> str:
    for rule in rules:
        if orders >= rule.min_orders and value >= rule.min_value_usd:
            return rule.name
    return fallback


def compute_features(
    orders: Iterable[OrderRow],
    items: Mapping[int, Iterable[ItemRow]],
    category_of_product: Mapping[int, str | None],
    rates: CurrencyRates,
    *,
    now: datetime,
    lookback: timedelta,
    segments: Iterable[SegmentRule],
    fallback_segment: str,
) -> FeatureValues:
    """Features of one customer's ``orders`` as of ``now`` (non-bearing orders are skipped)."""
    since = now - lookback
    recent_count = lifetime_count = 0
    recent_total = lifetime_total = ZERO
    spend: dict[str, tuple[Decimal, int]] = {}
    for order in orders:
        if not order.revenue_bearing:
            continue
        on = order.created_at.date()
        usd = rates.to_usd(order.total_amount, order.currency, on)
        lifetime_count += 1
        lifetime_total += usd
        if order.created_at <= since:
            continue
        recent_count += 1
        recent_total += usd
        rate = rates.rate(order.currency, on)
        for item in items.get(order.order_id, ()):
            category = None if item.deleted else category_of_product.get(item.product_id)
            if category is None:
                continue
            amount, count = spend.get(category, (ZERO, 0))
            item_usd = item.quantity * item.unit_price * rate
            spend[category] = (amount + item_usd, count + item.quantity)
    preferred = min(spend, key=lambda name: (-spend[name][0], -spend[name][1], name), default=None)
    return FeatureValues(
        order_count_last_30_days=recent_count,
        total_spent_last_30_days=recent_total,
        avg_order_value=to_cents(recent_total / recent_count) if recent_count else None,
        preferred_category=preferred,
        lifetime_order_count=lifetime_count,
        lifetime_value=lifetime_total,
        lifetime_segment=segment_of(lifetime_count, lifetime_total, segments, fallback_segment),
    )


def below(stored_lsn: int | None, truncate_lsn: int) -> bool:
    """True when a stored row predates a truncate at ``truncate_lsn`` (a row stored without
    its LSN, by a worker before 0021, counts as older)."""
    return stored_lsn is None or stored_lsn < truncate_lsn


def replayed(stored_lsn: int | None, lsn: int | None) -> bool:
    """True when a change at ``lsn`` is older than the one the stored row came from."""
    return stored_lsn is not None and lsn is not None and lsn < stored_lsn


class CustomerFeatureState:
    """Inputs of every customer's features, the dirty set and the age-out schedule."""

    def __init__(
        self,
        rates: CurrencyRates,
        *,
        lookback: timedelta,
        segments: tuple[SegmentRule, ...],
        fallback_segment: str,
        orders: MutableMapping[int, OrderRow] | None = None,
        customer_orders: MutableMapping[int, frozenset[int]] | None = None,
        items: MutableMapping[int, dict[int, ItemRow]] | None = None,
        products: MutableMapping[int, ProductRow] | None = None,
        categories: MutableMapping[int, str] | None = None,
        category_lsns: MutableMapping[int, int] | None = None,
        features: MutableMapping[int, CustomerFeatures] | None = None,
        ageing: MutableMapping[str, int] | None = None,
    ) -> None:
        self.rates = rates
        self.lookback = lookback
        self.segments = segments
        self.fallback_segment = fallback_segment
        self.orders: MutableMapping[int, OrderRow] = {} if orders is None else orders
        self.customer_orders: MutableMapping[int, frozenset[int]] = (
            {} if customer_orders is None else customer_orders
        )
        self.items: MutableMapping[int, dict[int, ItemRow]] = {} if items is None else items
        self.products: MutableMapping[int, ProductRow] = {} if products is None else products
        self.categories: MutableMapping[int, str] = {} if categories is None else categories
        #: Source LSN of each category's last change: what a TRUNCATE compares (0021).
        self.category_lsns: MutableMapping[int, int] = (
            {} if category_lsns is None else category_lsns
        )
        self.features: MutableMapping[int, CustomerFeatures] = {} if features is None else features
        self.dirty: set[int] = set()
        #: The customers still to recompute after ``recompute_all`` (None: no sweep).
        self._full_sweep: Iterator[int] | None = None
        #: When each customer's orders leave the look-back (kept in the state: issue 23).
        self.schedule = AgeingSchedule({} if ageing is None else ageing)
        self._ageing_now: datetime | None = None  # the last sweep's time

    def recover(self) -> None:
        """After a restart: every customer is recomputed (emitted only where the values
        differ); the schedule is rebuilt from the orders only when the state has none (a
        changelog written before the schedule was kept in the state)."""
        self.recompute_all()
        if self.schedule.empty():
            for order in self.orders.values():
                self._schedule(order)

    # -- inputs ------------------------------------------------------------------------------
    def apply_order(self, order_id: int, row: OrderRow | None) -> None:
        old = self.orders.get(order_id)
        if old is not None and old == row:
            return
        if old is not None:
            self._mark(old.customer_id)
            if row is None or row.customer_id != old.customer_id:
                self._unlink(old.customer_id, order_id)
        if row is None:
            self.orders.pop(order_id, None)
            self.items.pop(order_id, None)
            return
        self.orders[order_id] = row
        linked = self.customer_orders.get(row.customer_id, frozenset())
        if order_id not in linked:
            self.customer_orders[row.customer_id] = linked | {order_id}
        self._mark(row.customer_id)
        self._schedule(row)

    def _unlink(self, customer_id: int, order_id: int) -> None:
        remaining = self.customer_orders.get(customer_id, frozenset()) - {order_id}
        self.customer_orders[customer_id] = remaining

    def _schedule(self, row: OrderRow) -> None:
        if row.revenue_bearing:
            self.schedule.add(row.created_at + self.lookback, row.customer_id)

    def apply_item(
        self, item_id: int, row: ItemRow | None, order_id: int | None, lsn: int | None = None
    ) -> None:
        """An item changed; ``order_id`` names its order when ``row`` is None (hard delete).

        A change older (by source LSN) than the stored row is a replay and ignored; a hard
        delete leaves a deleted row with its LSN, so a replayed insert cannot bring it back.
        """
        owner = row.order_id if row is not None else order_id
        if owner is None:
            return
        current = dict(self.items.get(owner, {}))
        old = current.get(item_id)
        if old is not None and replayed(old.lsn, lsn):
            return
        if row is None:
            if old is None or (old.deleted and old.lsn == lsn):
                return
            current[item_id] = replace(old, deleted=True, lsn=lsn)
        else:
            if old == row:
                return
            current[item_id] = row
        self.items[owner] = current
        order = self.orders.get(owner)
        if order is not None:
            self._mark(order.customer_id)

    def apply_product(
        self, product_id: int, row: ProductRow | None, lsn: int | None = None
    ) -> None:
        """A product changed (None: hard-deleted; kept as a row without category and with its
        LSN, so a replayed older change cannot bring the old category back)."""
        old = self.products.get(product_id)
        if old is not None and replayed(old.lsn, lsn):
            return
        if row is None:
            row = ProductRow(product_id, None, deleted=True, lsn=lsn)
        if old == row:
            return
        self.products[product_id] = row
        if old is None or row is None or old.category_id != row.category_id:
            # A category moves every customer's spend that bought it; rare, so recompute all.
            self.recompute_all()

    def apply_category(self, category_id: int, name: str | None, lsn: int | None = None) -> None:
        if lsn is not None:
            self.category_lsns[category_id] = lsn
        if name is None:
            self.categories.pop(category_id, None)
        elif self.categories.get(category_id) == name:
            return
        else:
            self.categories[category_id] = name
        self.recompute_all()

    # -- TRUNCATE (docs/decisions/0021) ---------------------------------------------------------
    # A truncate at ``lsn`` withdraws every row of its table last changed below it; a row
    # changed at or above it (a change after the truncate, read first from another
    # partition) stays. The caller drops later-read changes below ``lsn`` (its barrier).
    def truncate_orders(self, lsn: int) -> None:
        """Withdraw every order below ``lsn`` (and its items), as hard deletes."""
        for order_id in [o for o, row in self.orders.items() if below(row.lsn, lsn)]:
            self.apply_order(order_id, None)

    def truncate_items(self, lsn: int) -> None:
        for owner, items in list(self.items.items()):
            kept = {i: item for i, item in items.items() if not below(item.lsn, lsn)}
            if len(kept) == len(items):
                continue
            if kept:
                self.items[owner] = kept
            else:
                del self.items[owner]
            order = self.orders.get(owner)
            if order is not None:
                self._mark(order.customer_id)

    def truncate_products(self, lsn: int) -> None:
        gone = [p for p, row in self.products.items() if below(row.lsn, lsn)]
        for product_id in gone:
            del self.products[product_id]
        if gone:
            self.recompute_all()

    def truncate_categories(self, lsn: int) -> None:
        gone = [c for c in self.categories if below(self.category_lsns.get(c), lsn)]
        for category_id in gone:
            del self.categories[category_id]
        for category_id in [c for c, at in self.category_lsns.items() if at < lsn]:
            del self.category_lsns[category_id]
        if gone:
            self.recompute_all()

    # -- time ------------------------------------------------------------------------------
    def sweep(self, now: datetime, limit: int | None = None) -> None:
        """Mark customers whose orders left the look-back by ``now`` (the earliest ``limit``
        entries of the schedule; the rest in the next calls). The first tick after a replay
        of 40 days finds a quarter of all orders due: 250,000 schedule entries deleted in
        one commit at a million orders (issue 23)."""
        self._ageing_now = now
        for customer_id in self.schedule.due(now, limit):
            self._mark(customer_id)

    def recompute_all(self) -> None:
        """Every customer is to be recomputed (a category moved, a restart): a sweep over
        the customers in the state, taken ``limit`` at a time by ``emit``, instead of a
        dirty set as large as the customer base (1,000,000 ids: ~90 MB, issue 23)."""
        self.dirty.clear()
        customers = self.customer_orders
        # A stored table iterates a snapshot of its folder; a dict must be copied to be
        # iterated while it changes.
        stable = getattr(customers, "iterates_a_snapshot", False)
        self._full_sweep = iter(customers) if stable else iter(list(customers))

    def pending(self) -> bool:
        """Customers wait to be recomputed: dirty ones, a sweep under way, or orders that
        left the look-back by the last ``sweep``'s time and were not taken yet. Their views
        answer the last values meanwhile; the next flushes catch up (``emit``'s limit)."""
        if self.dirty or self._full_sweep is not None:
            return True
        return self._ageing_now is not None and self.schedule.is_due(self._ageing_now)

    def _mark(self, customer_id: int) -> None:
        self.dirty.add(customer_id)
        if len(self.dirty) > DIRTY_LIMIT:  # a replay touches everyone: sweep instead
            self.recompute_all()

    def emit(self, now: datetime, limit: int | None = None) -> list[CustomerFeatures]:
        """Recompute dirty customers as of ``now`` (at most ``limit``: the dirty set first,
        then the next customers of a sweep; the others wait for the next call); returns
        those whose values changed.

        The limit bounds one flush: after a replay every customer is recomputed, and
        computing and writing 200,000 customers' features at once held 500 MB (issue 23)."""
        changed = []
        dirty, self.dirty = sorted(self.dirty), set()
        if limit is not None and len(dirty) > limit:
            dirty, rest = dirty[:limit], dirty[limit:]
            self.dirty.update(rest)
        if self._full_sweep is not None and (limit is None or len(dirty) < limit):
            room = None if limit is None else limit - len(dirty)
            swept = list(itertools.islice(self._full_sweep, room))
            if room is None or len(swept) < room:
                self._full_sweep = None  # every customer was taken
            dirty = sorted(set(dirty).union(swept))
        categories = self._category_of_product()
        for customer_id in dirty:
            order_ids = self.customer_orders.get(customer_id, frozenset())
            orders = [self.orders[o] for o in order_ids if o in self.orders]
            values = compute_features(
                orders,
                {o.order_id: self.items.get(o.order_id, {}).values() for o in orders},
                categories,
                self.rates,
                now=now,
                lookback=self.lookback,
                segments=self.segments,
                fallback_segment=self.fallback_segment,
            )
            previous = self.features.get(customer_id)
            if previous is not None and previous.values == values:
                continue
            if previous is None and values.lifetime_order_count == 0:
                continue  # never had a bearing order: nothing to publish
            version = previous.feature_version + 1 if previous is not None else 1
            features = CustomerFeatures(customer_id, values, now, version, now)
            self.features[customer_id] = features
            changed.append(features)
        return changed

    def _category_of_product(self) -> dict[int, str | None]:
        return {
            product_id: None
            if product.category_id is None
            else self.categories.get(product.category_id)
            for product_id, product in self.products.items()
        }

    def snapshot(self) -> list[CustomerFeatures]:
        return list(self.features.values())
