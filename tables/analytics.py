"""The analytics state machine: decoded CDC changes in, revenue rows and features out.

Routes changes of ``orders``, ``order_items``, ``products`` and ``categories`` to
``HourlyRevenue`` and ``CustomerFeatureState``, keeps the watermark (per ``orders``
partition, from each order's ``created_at``; a partition idle for ``idle_after`` by the
heartbeat's clock is advanced to the heartbeat's time) and collects what to emit until the
caller drains it. Pure: no Kafka, no database, time passed in. State lives in the mappings
of ``AnalyticsState`` (dicts here, Faust tables in the worker).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from config.settings import Settings
from records.change_events import ChangeEvent, Operation
from tables.features import CurrencyRates, CustomerFeatures, CustomerFeatureState, below
from tables.orders import (
    ItemRow,
    OrderRow,
    ProductRow,
    item_from_row,
    order_from_row,
    product_from_row,
)
from tables.revenue import (
    Contribution,
    HourlyRevenue,
    HourlyRevenueRow,
    LateEvent,
    WindowTotals,
    position_only,
    row_of,
)
from tables.windows import Watermarks

TABLES = ("orders", "order_items", "products", "categories")


@dataclass
class AnalyticsState:
    """Every mapping the analytics keep; a restarted worker gets them back from changelogs."""

    contributions: MutableMapping[int, Contribution] = field(default_factory=dict)
    windows: MutableMapping[str, WindowTotals] = field(default_factory=dict)
    orders: MutableMapping[int, OrderRow] = field(default_factory=dict)
    customer_orders: MutableMapping[int, frozenset[int]] = field(default_factory=dict)
    items: MutableMapping[int, dict[int, ItemRow]] = field(default_factory=dict)
    products: MutableMapping[int, ProductRow] = field(default_factory=dict)
    categories: MutableMapping[int, str] = field(default_factory=dict)
    features: MutableMapping[int, CustomerFeatures] = field(default_factory=dict)
    category_lsns: MutableMapping[int, int] = field(default_factory=dict)
    #: Source table -> LSN of its newest TRUNCATE: a change read later from below it is
    #: dropped (it was withdrawn; docs/decisions/0021).
    truncations: MutableMapping[str, int] = field(default_factory=dict)
    #: "<UTC instant>|<customer>" -> customer: when an order leaves the features' look-back.
    ageing: MutableMapping[str, int] = field(default_factory=dict)
    #: "<window key>#<order id>" -> order id: the orders of each window (for forgetting it).
    window_orders: MutableMapping[str, int] = field(default_factory=dict)


@dataclass
class AnalyticsOutputs:
    hourly: list[HourlyRevenueRow] = field(default_factory=list)
    features: list[CustomerFeatures] = field(default_factory=list)
    late: list[LateEvent] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.hourly) + len(self.features) + len(self.late)


def _row(event: ChangeEvent) -> Mapping[str, Any] | None:
    """The row after the change, or None when it is gone (delete, truncate)."""
    if event.op in (Operation.DELETE, Operation.TRUNCATE):
        return None
    return event.after


def _key_int(event: ChangeEvent, column: str) -> int | None:
    for row in (event.key, event.after, event.before):
        if row is not None and row.get(column) is not None:
            return int(row[column])
    return None


def _changed_at(row: Mapping[str, Any] | None, event: ChangeEvent) -> datetime:
    """When the change happened in the source: the row's ``updated_at`` (set on every write,
    and the same in a snapshot read of the row as in the change itself), else (a hard
    delete, a row without it) the commit time. Lateness is judged by it (0020)."""
    stamp = None if row is None else row.get("updated_at")
    if isinstance(stamp, datetime) and stamp.tzinfo is not None:
        return stamp.astimezone(UTC)
    return event.committed_at


class AnalyticsCore:
    """One worker's analytics: ``apply`` changes, ``tick`` with the clock, ``drain`` outputs."""

    def __init__(
        self,
        settings: Settings,
        rates: CurrencyRates,
        state: AnalyticsState | None = None,
    ) -> None:
        windows = settings.windows
        self.state = state or AnalyticsState()
        self.watermarks = Watermarks()
        self.idle_after: timedelta = settings.features.idle_partition_after
        self.emit_limit = settings.features.emit_max_customers
        self._last_event: dict[int, datetime] = {}  # orders partition -> last commit time
        self.revenue = HourlyRevenue(
            size=windows.hourly_revenue_size,
            grace=windows.grace_period,
            retention=windows.retention,
            watermarks=self.watermarks,
            contributions=self.state.contributions,
            windows=self.state.windows,
            window_orders=self.state.window_orders,
        )
        self.features = CustomerFeatureState(
            rates,
            lookback=windows.features_lookback,
            segments=settings.features.segments,
            fallback_segment=settings.features.fallback_segment,
            orders=self.state.orders,
            customer_orders=self.state.customer_orders,
            items=self.state.items,
            products=self.state.products,
            categories=self.state.categories,
            category_lsns=self.state.category_lsns,
            features=self.state.features,
            ageing=self.state.ageing,
        )
        self.outputs = AnalyticsOutputs()

    # -- partitions ------------------------------------------------------------------------------
    def assign(self, partitions: list[int]) -> None:
        for partition in partitions:
            self.watermarks.assign(partition)

    def revoke(self, partitions: list[int]) -> None:
        for partition in partitions:
            self.watermarks.revoke(partition)
            self._last_event.pop(partition, None)

    def progress(self) -> dict[int, tuple[datetime | None, datetime | None]]:
        """Per ``orders`` partition: newest event time and last commit time (for changelogs)."""
        return {
            partition: (self.watermarks.newest(partition), self._last_event.get(partition))
            for partition in self.watermarks.partitions()
            if isinstance(partition, int)
        }

    def restore_progress(
        self, progress: Mapping[int, tuple[datetime | None, datetime | None]]
    ) -> None:
        """Take back what ``progress`` returned before a restart (watermarks never go back)."""
        for partition, (newest, last_event) in progress.items():
            self.watermarks.assign(partition)
            if newest is not None:
                self.watermarks.observe(partition, newest)
            if last_event is not None:
                self._last_event[partition] = last_event

    def recover(self) -> None:
        """After state came back from changelogs: recompute features, re-publish windows."""
        self.features.recover()
        self.outputs.hourly.extend(self.revenue.snapshot())

    def adopt_features(self, stored: Iterable[CustomerFeatures]) -> None:
        """Before ``reconcile``: stored (gold) features become the "previous" values, so only
        customers whose features differ are emitted, with versions above gold's."""
        for features in stored:
            self.state.features[features.customer_id] = features

    def reconcile(
        self,
        stored_windows: Mapping[str, WindowTotals],
        stored_features: Iterable[CustomerFeatures] = (),
    ) -> None:
        """After state was rebuilt by replay: continue the versions the outputs already hold.

        A window whose values equal the stored row takes its version and is not emitted;
        one that differs is emitted with a version above both; an empty one gold does not
        hold is not emitted (an absent window and a zero one say the same). Stored features
        (given here or to ``adopt_features`` before, in chunks) become the "previous" values.
        """
        self.revenue.recover()
        # Finality as of the replayed watermark, before comparing. Windows beyond retention
        # stay until the next tick: one rebuilt from changes that were not late (by their
        # own time) but that no run published yet (a first start) is written below.
        self.revenue.advance(forget=False)
        # What the replay emitted is superseded below, except late events: the caller
        # publishes them (docs/decisions/0020).
        self.outputs = AnalyticsOutputs(late=self.outputs.late)
        for key, totals in list(self.state.windows.items()):
            stored = stored_windows.get(key)
            if stored is None and totals.order_count == 0 and not totals.revenue:
                # Every order of it withdrawn (deleted, truncated) and gold never held it:
                # nothing to retract. A live run that read the truncate before the rows
                # never made the window at all; absent and zero are the same answer.
                continue
            same = stored is not None and (
                stored.revenue,
                stored.order_count,
                stored.is_final,
            ) == (totals.revenue, totals.order_count, totals.is_final)
            if stored is not None and same:
                self.state.windows[key] = replace(totals, version=stored.version)
                continue
            floor = stored.version if stored is not None else 0
            updated = replace(totals, version=max(totals.version, floor) + 1)
            self.state.windows[key] = updated
            self.outputs.hourly.append(row_of(updated))
        self.adopt_features(stored_features)
        self.features.recover()

    # -- changes --------------------------------------------------------------------------------
    def apply(self, partition: int, event: ChangeEvent) -> None:
        if event.table not in TABLES:
            return
        if event.op is Operation.TRUNCATE:
            self._truncate(partition, event)
        elif event.table == "orders":
            self._apply_order(partition, event)
        elif self._withdrawn(event):
            return
        elif event.table == "order_items":
            item_id = _key_int(event, "order_item_id")
            row = _row(event)
            if item_id is not None:
                lsn = event.position.lsn
                item = None if row is None else item_from_row(row, lsn)
                self.features.apply_item(item_id, item, _key_int(event, "order_id"), lsn)
        elif event.table == "products":
            product_id = _key_int(event, "product_id")
            row = _row(event)
            if product_id is not None:
                lsn = event.position.lsn
                product = None if row is None else product_from_row(row, lsn)
                self.features.apply_product(product_id, product, lsn)
        elif event.table == "categories":
            category_id = _key_int(event, "category_id")
            row = _row(event)
            if category_id is not None:
                name = None if row is None or row.get("deleted_at") else str(row["name"])
                self.features.apply_category(category_id, name, event.position.lsn)

    def _withdrawn(self, event: ChangeEvent) -> bool:
        """True for a change from before its table's newest TRUNCATE, read after it (the
        truncate has no key, so it travels on one partition while rows hash over all)."""
        barrier = self.state.truncations.get(event.table)
        lsn = event.position.lsn
        return barrier is not None and lsn is not None and lsn < barrier

    def _apply_order(self, partition: int, event: ChangeEvent) -> None:
        order_id = _key_int(event, "order_id")
        if order_id is None:
            return
        row = _row(event)
        lsn = event.position.lsn
        order = None if row is None else order_from_row(row, lsn)
        self._last_event[partition] = event.committed_at
        if order is not None:
            self.watermarks.observe(partition, order.created_at)
        if self._withdrawn(event) or self.revenue.replayed(order_id, lsn):
            return  # an older change replayed: revenue and features already hold a newer one
        change = self.revenue.apply(order_id, order, lsn, _changed_at(row, event))
        self.outputs.hourly.extend(change.rows)
        self.outputs.late.extend(change.late)
        self.features.apply_order(order_id, order)

    def _truncate(self, partition: int, event: ChangeEvent) -> None:
        """Withdraw every row of the table last changed below the truncate's LSN, as silver
        marks them deleted (docs/decisions/0021). Orders go as hard deletes at the truncate
        (revenue retracted, or a late event for a window beyond retention, by the commit
        time); items, products and categories leave the features' inputs. Idempotent: a
        replay finds nothing below the LSN left, and the barrier only grows."""
        lsn = event.position.lsn
        if lsn is None or self.state.truncations.get(event.table, -1) >= lsn:
            return
        self.state.truncations[event.table] = lsn
        if event.table == "orders":
            self._last_event[partition] = event.committed_at
            contributions = self.state.contributions
            withdrawn = position_only(lsn)
            for order_id in sorted(o for o, c in contributions.items() if below(c.lsn, lsn)):
                change = self.revenue.apply(order_id, None, lsn, event.committed_at)
                self.outputs.hourly.extend(change.rows)
                self.outputs.late.extend(change.late)
                if contributions.get(order_id) == withdrawn:
                    del contributions[order_id]  # the barrier guards it from now on
            self.features.truncate_orders(lsn)
        elif event.table == "order_items":
            self.features.truncate_items(lsn)
        elif event.table == "products":
            self.features.truncate_products(lsn)
        elif event.table == "categories":
            self.features.truncate_categories(lsn)

    def heartbeat(self, moment: datetime) -> None:
        """Debezium is alive at ``moment``: advance partitions idle for ``idle_after``."""
        for partition in self.watermarks.partitions():
            last = self._last_event.get(partition) if isinstance(partition, int) else None
            if last is None or moment - last >= self.idle_after:
                self.watermarks.observe(partition, moment)

    # -- time -----------------------------------------------------------------------------------
    def tick(self, now: datetime) -> None:
        """Close windows the watermark passed, age orders out, recompute changed features."""
        self.outputs.hourly.extend(self.revenue.advance(forget_orders=self.emit_limit).rows)
        self.features.sweep(now, self.emit_limit)
        self.outputs.features.extend(self.features.emit(now, self.emit_limit))

    def drain(self) -> AnalyticsOutputs:
        outputs, self.outputs = self.outputs, AnalyticsOutputs()
        return outputs
