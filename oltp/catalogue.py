"""The OLTP workload's starting point: what the database holds, and the catalogue it needs.

A workload continues from the rows already there (categories, products, customers, recent
orders) and inserts only the catalogue rows its configuration asks for beyond them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from oltp.loadgen import LoadgenConfig, LoadgenResult

COUNTRIES = ("US", "GB", "DE", "FR", "ES", "NL", "SE", "PL")
CENT = Decimal("0.01")


def money(rng: random.Random, low: int, high: int) -> Decimal:
    """A random amount between ``low`` and ``high`` units, in whole cents."""
    cents = rng.randint(low * 100, high * 100)
    return (Decimal(cents) / 100).quantize(CENT)


@dataclass
class OrderState:
    """What the workload remembers of an order it may change next."""

    order_id: int
    created_date: date
    status: str
    deleted: bool = False


@dataclass
class WorkloadState:
    """The rows the workload picks from: loaded at start, grown as it inserts."""

    categories: list[int] = field(default_factory=list)
    products: dict[int, Decimal] = field(default_factory=dict)
    customers: list[int] = field(default_factory=list)
    orders: dict[int, OrderState] = field(default_factory=dict)


async def load_state(connection: asyncpg.Connection) -> WorkloadState:
    """What the OLTP database holds already (a workload continues an earlier one)."""
    state = WorkloadState()
    state.categories = [
        r[0]
        for r in await connection.fetch("SELECT category_id FROM categories ORDER BY category_id")
    ]
    state.products = {
        r[0]: r[1]
        for r in await connection.fetch(
            "SELECT product_id, price FROM products ORDER BY product_id"
        )
    }
    state.customers = [
        r[0]
        for r in await connection.fetch(
            "SELECT customer_id FROM customers WHERE deleted_at IS NULL ORDER BY customer_id"
        )
    ]
    for row in await connection.fetch(
        "SELECT order_id, created_date, status, deleted_at IS NOT NULL AS deleted FROM orders "
        "ORDER BY order_id DESC LIMIT 5000"
    ):
        state.orders[row[0]] = OrderState(row[0], row[1], row[2], row[3])
    return state


async def seed_catalogue(
    connection: asyncpg.Connection,
    state: WorkloadState,
    config: LoadgenConfig,
    rng: random.Random,
    result: LoadgenResult,
) -> None:
    """Insert the categories, products and customers ``config`` asks for beyond ``state``."""
    async with connection.transaction():
        start = len(state.categories)
        for index in range(start, config.categories):
            category_id = await connection.fetchval(
                "INSERT INTO categories (name) VALUES ($1) RETURNING category_id",
                f"Category {index + 1}",
            )
            state.categories.append(category_id)
            result.count("categories", "inserts")
        start = len(state.products)
        for index in range(start, config.products):
            price = money(rng, 2, 400)
            product_id = await connection.fetchval(
                "INSERT INTO products (sku, name, category_id, price) VALUES ($1, $2, $3, $4) "
                "RETURNING product_id",
                f"SKU-{index + 1:06d}",
                f"Product {index + 1}",
                rng.choice(state.categories),
                price,
            )
            state.products[product_id] = price
            result.count("products", "inserts")
        start = len(state.customers)
        for index in range(start, config.customers):
            customer_id = await connection.fetchval(
                "INSERT INTO customers (email, first_name, last_name, country) "
                "VALUES ($1, $2, $3, $4) RETURNING customer_id",
                f"customer{index + 1}@example.com",
                f"First{index + 1}",
                f"Last{index + 1}",
                rng.choice(COUNTRIES),
            )
            state.customers.append(customer_id)
            result.count("customers", "inserts")
