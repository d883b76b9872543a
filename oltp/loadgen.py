"""A seeded, realistic workload against the OLTP database.

Each business transaction (a new order with items and a payment, a status step, a
cancellation, an amount edit, a soft or hard delete, a price or category change, a
customer edit) runs in one database transaction that sets ``bv.correlation_id``, the id
the audit trail and, downstream, the trace ids carry. Choices come from one
``random.Random(seed)``: the same seed against the same starting database gives the same
operations. Every row the workload inserts, updates or deletes is tallied per table, so
tests can check that CDC captured exactly that much.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import asyncpg

from config.errors import ConfigurationError
from config.settings import Settings
from oltp.catalogue import (
    CENT,
    COUNTRIES,
    OrderState,
    WorkloadState,
    load_state,
    money,
    seed_catalogue,
)
from sinks.postgres.connection import connect

NEXT_STATUS = {"PENDING": "CONFIRMED", "CONFIRMED": "SHIPPED", "SHIPPED": "DELIVERED"}
OPEN_STATUSES = frozenset(NEXT_STATUS)
METHODS = ("CARD", "PAYPAL", "BANK_TRANSFER", "GIFT_CARD")
ACTIONS: tuple[tuple[str, int], ...] = (
    ("new_order", 40),
    ("advance_status", 25),
    ("cancel_order", 6),
    ("edit_amount", 6),
    ("change_price", 6),
    ("soft_delete_order", 4),
    ("change_category", 4),
    ("edit_customer", 4),
    ("hard_delete_order", 3),
)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class LoadgenConfig:
    """What to generate. Invalid values raise ``ConfigurationError`` naming the option."""

    seed: int = 42
    customers: int = 50
    products: int = 40
    categories: int = 8
    transactions: int = 500
    rate: float | None = None  # business transactions per second; None: as fast as possible
    duration_s: float | None = None
    #: Order dates spread over this many days: inside the default 35-day revenue retention,
    #: so a default load puts no revenue beyond it (issue 22); more days make late events.
    days_back: int = 30
    currencies: tuple[str, ...] = ("USD", "EUR", "GBP")

    def __post_init__(self) -> None:
        for name in ("customers", "products", "categories", "transactions"):
            if getattr(self, name) < (0 if name == "transactions" else 1):
                raise ConfigurationError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.rate is not None and self.rate <= 0:
            raise ConfigurationError(
                f"--rate must be a positive number per second, got {self.rate}"
            )
        if self.duration_s is not None and self.duration_s <= 0:
            raise ConfigurationError(f"--duration must be positive seconds, got {self.duration_s}")
        if self.days_back < 1:
            raise ConfigurationError(f"--days-back must be at least 1, got {self.days_back}")


@dataclass
class TableChanges:
    inserts: int = 0
    updates: int = 0
    deletes: int = 0

    @property
    def total(self) -> int:
        return self.inserts + self.updates + self.deletes


@dataclass
class LoadgenResult:
    """What the run did, row by row, per table."""

    tables: dict[str, TableChanges] = field(default_factory=dict)
    transactions: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def count(self, table: str, op: str, rows: int = 1) -> None:
        changes = self.tables.setdefault(table, TableChanges())
        setattr(changes, op, getattr(changes, op) + rows)


def ensure_open(connection: asyncpg.Connection) -> None:
    """Raise a lost connection if the server closed ``connection`` while it was idle.

    asyncpg notices a server that went away between two transactions only by closing the
    connection, and the next ``transaction()`` then raises a bare ``InterfaceError``
    ("connection is closed"), which says nothing about why. Raised here as asyncpg's own
    lost-connection error, the CLI reports it as the one ``error:`` line it is.
    """
    if connection.is_closed():
        raise asyncpg.ConnectionDoesNotExistError("the server closed the connection")


class Workload:
    """Runs a ``LoadgenConfig`` against one connection."""

    def __init__(self, config: LoadgenConfig, now: datetime | None = None) -> None:
        self.config = config
        self.rng = random.Random(config.seed)  # noqa: S311 - a workload, not cryptography
        self.now = now or datetime.now(UTC)
        self.state = WorkloadState()
        self.result = LoadgenResult()

    async def run(
        self, connection: asyncpg.Connection, progress: Progress | None = None
    ) -> LoadgenResult:
        started = time.monotonic()
        self.state = await load_state(connection)
        await seed_catalogue(connection, self.state, self.config, self.rng, self.result)
        interval = 1.0 / self.config.rate if self.config.rate else 0.0
        total = self.config.transactions
        for number in range(total):
            if self.config.duration_s and time.monotonic() - started >= self.config.duration_s:
                break
            if interval:
                delay = started + number * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            action = self._pick_action()
            try:
                async with connection.transaction():
                    await connection.execute(
                        "SELECT set_config('bv.correlation_id', $1, true)",
                        str(uuid.UUID(int=self.rng.getrandbits(128))),
                    )
                    await self._dispatch(action)(connection)
            except asyncpg.InterfaceError:
                ensure_open(connection)  # closed (idle or mid-transaction): a lost connection
                raise
            self.result.transactions += 1
            self.result.actions[action] = self.result.actions.get(action, 0) + 1
            if progress:
                progress(number + 1, total)
        self.result.elapsed_s = time.monotonic() - started
        return self.result

    # -- choosing ----------------------------------------------------------------------------
    def _pick_action(self) -> str:
        names = [name for name, _ in ACTIONS]
        weights = [weight for _, weight in ACTIONS]
        return self.rng.choices(names, weights)[0]

    def _dispatch(self, action: str) -> Callable[[asyncpg.Connection], Awaitable[None]]:
        handler: Callable[[asyncpg.Connection], Awaitable[None]] = getattr(self, f"_{action}")
        return handler

    def _pick_order(
        self, *, statuses: frozenset[str] | None = None, live: bool = True
    ) -> OrderState | None:
        candidates = [
            order
            for order in self.state.orders.values()
            if (statuses is None or order.status in statuses) and (not live or not order.deleted)
        ]
        if not candidates:
            return None
        candidates.sort(key=lambda order: order.order_id)
        return self.rng.choice(candidates)

    def _money(self, low: int, high: int) -> Decimal:
        return money(self.rng, low, high)

    # -- actions -----------------------------------------------------------------------------
    async def _new_order(self, connection: asyncpg.Connection) -> None:
        created_at = (
            self.now - timedelta(seconds=self.rng.uniform(0, self.config.days_back * 86400))
        ).replace(microsecond=0)
        created_date = created_at.astimezone(UTC).date()
        currency = self.rng.choice(self.config.currencies)
        product_ids = sorted(self.state.products)
        lines = []
        for product_id in self.rng.sample(
            product_ids, k=min(len(product_ids), self.rng.randint(1, 4))
        ):
            lines.append((product_id, self.rng.randint(1, 3), self.state.products[product_id]))
        total = sum((quantity * price for _, quantity, price in lines), Decimal("0.00"))
        order_id = await connection.fetchval(
            "INSERT INTO orders"
            " (customer_id, status, currency, total_amount, created_at, created_date)"
            " VALUES ($1, 'PENDING', $2, $3, $4, $5) RETURNING order_id",
            self.rng.choice(self.state.customers),
            currency,
            total,
            created_at,
            created_date,
        )
        await connection.executemany(
            "INSERT INTO order_items (order_id, order_created_date, product_id, quantity,"
            " unit_price, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            [(order_id, created_date, p, q, price, created_at) for p, q, price in lines],
        )
        await connection.execute(
            "INSERT INTO payments (order_id, order_created_date, amount, currency, method,"
            " created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            order_id,
            created_date,
            total,
            currency,
            self.rng.choice(METHODS),
            created_at,
        )
        self.state.orders[order_id] = OrderState(order_id, created_date, "PENDING")
        self.result.count("orders", "inserts")
        self.result.count("order_items", "inserts", len(lines))
        self.result.count("payments", "inserts")

    async def _advance_status(self, connection: asyncpg.Connection) -> None:
        order = self._pick_order(statuses=OPEN_STATUSES)
        if order is None:
            return await self._new_order(connection)
        order.status = NEXT_STATUS[order.status]
        await self._set_status(connection, order)
        if order.status == "CONFIRMED":
            captured = await connection.execute(
                "UPDATE payments SET status = 'CAPTURED'"
                " WHERE order_id = $1 AND order_created_date = $2",
                order.order_id,
                order.created_date,
            )
            self.result.count("payments", "updates", _rows(captured))
        return None

    async def _cancel_order(self, connection: asyncpg.Connection) -> None:
        order = self._pick_order(statuses=OPEN_STATUSES)
        if order is None:
            return await self._new_order(connection)
        order.status = "CANCELLED"
        await self._set_status(connection, order)
        return None

    async def _set_status(self, connection: asyncpg.Connection, order: OrderState) -> None:
        updated = await connection.execute(
            "UPDATE orders SET status = $3 WHERE order_id = $1 AND created_date = $2",
            order.order_id,
            order.created_date,
            order.status,
        )
        self.result.count("orders", "updates", _rows(updated))

    async def _edit_amount(self, connection: asyncpg.Connection) -> None:
        order = self._pick_order(statuses=frozenset({"PENDING", "CONFIRMED"}))
        if order is None:
            return await self._new_order(connection)
        item = await connection.fetchrow(
            "SELECT order_item_id FROM order_items WHERE order_id = $1 AND order_created_date = $2 "
            "ORDER BY order_item_id LIMIT 1",
            order.order_id,
            order.created_date,
        )
        if item is None:
            return None
        await connection.execute(
            "UPDATE order_items SET quantity = quantity + 1 WHERE order_item_id = $1", item[0]
        )
        updated = await connection.execute(
            "UPDATE orders SET total_amount = (SELECT sum(quantity * unit_price)"
            " FROM order_items WHERE order_id = $1 AND order_created_date = $2)"
            " WHERE order_id = $1 AND created_date = $2",
            order.order_id,
            order.created_date,
        )
        self.result.count("order_items", "updates")
        self.result.count("orders", "updates", _rows(updated))
        return None

    async def _soft_delete_order(self, connection: asyncpg.Connection) -> None:
        order = self._pick_order()
        if order is None:
            return await self._new_order(connection)
        order.deleted = True
        updated = await connection.execute(
            "UPDATE orders SET deleted_at = now(), deleted_by = current_user "
            "WHERE order_id = $1 AND created_date = $2",
            order.order_id,
            order.created_date,
        )
        self.result.count("orders", "updates", _rows(updated))
        return None

    async def _hard_delete_order(self, connection: asyncpg.Connection) -> None:
        order = self._pick_order(live=False)
        if order is None:
            return await self._new_order(connection)
        del self.state.orders[order.order_id]
        key = (order.order_id, order.created_date)
        # Children first, explicitly, so every deleted row is counted (not hidden in a cascade).
        items = await connection.execute(
            "DELETE FROM order_items WHERE order_id = $1 AND order_created_date = $2", *key
        )
        payments = await connection.execute(
            "DELETE FROM payments WHERE order_id = $1 AND order_created_date = $2", *key
        )
        orders = await connection.execute(
            "DELETE FROM orders WHERE order_id = $1 AND created_date = $2", *key
        )
        self.result.count("order_items", "deletes", _rows(items))
        self.result.count("payments", "deletes", _rows(payments))
        self.result.count("orders", "deletes", _rows(orders))
        return None

    async def _change_price(self, connection: asyncpg.Connection) -> None:
        product_id = self.rng.choice(sorted(self.state.products))
        factor = Decimal(self.rng.randint(80, 120)) / 100
        price = (self.state.products[product_id] * factor).quantize(CENT, ROUND_HALF_UP)
        self.state.products[product_id] = price
        await connection.execute(
            "UPDATE products SET price = $2 WHERE product_id = $1", product_id, price
        )
        self.result.count("products", "updates")

    async def _change_category(self, connection: asyncpg.Connection) -> None:
        product_id = self.rng.choice(sorted(self.state.products))
        await connection.execute(
            "UPDATE products SET category_id = $2 WHERE product_id = $1",
            product_id,
            self.rng.choice(self.state.categories),
        )
        self.result.count("products", "updates")

    async def _edit_customer(self, connection: asyncpg.Connection) -> None:
        customer_id = self.rng.choice(self.state.customers)
        await connection.execute(
            "UPDATE customers SET country = $2 WHERE customer_id = $1",
            customer_id,
            self.rng.choice(COUNTRIES),
        )
        self.result.count("customers", "updates")


async def run_loadgen(
    settings: Settings,
    config: LoadgenConfig,
    *,
    database: str | None = None,
    progress: Progress | None = None,
) -> LoadgenResult:
    """Run ``config`` once against ``database`` (default: the configured one)."""
    connection = await connect(settings.postgres, database)
    try:
        return await Workload(config).run(connection, progress)
    finally:
        await connection.close()


def _rows(status: str) -> int:
    """Row count from a command tag such as ``UPDATE 1`` or ``DELETE 3``."""
    return int(status.rsplit(" ", 1)[-1])
