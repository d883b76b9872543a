"""Helpers of the cache tests: isolated key space and channel, a products database, sources."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from decimal import Decimal

import asyncpg

from cache.codec import CacheValue
from cache.keys import CacheKind
from cache.loaders import PostgresSource
from config.settings import Settings
from sinks.postgres.connection import connect


def isolated(settings: Settings, database: str | None = None, **cache: object) -> Settings:
    """Settings whose cache keys and channel no other test or process uses."""
    run = secrets.token_hex(4)
    update: dict[str, object] = {
        "cache": settings.cache.model_copy(
            update={"key_prefix": f"bv:test:{run}:cache", "channel": f"bv:test:{run}:inv", **cache}
        )
    }
    if database is not None:
        update["postgres"] = settings.postgres.model_copy(update={"database": database})
    return settings.model_copy(update=update)


async def seed_products(settings: Settings, count: int, price: Decimal) -> list[int]:
    """One category and ``count`` products at ``price``; their ids."""
    connection = await connect(settings.postgres)
    try:
        category = await connection.fetchval(
            "INSERT INTO public.categories (name) VALUES ($1) RETURNING category_id",
            f"cat-{secrets.token_hex(3)}",
        )
        return [
            await connection.fetchval(
                "INSERT INTO public.products (sku, name, category_id, price) "
                "VALUES ($1, $2, $3, $4) RETURNING product_id",
                f"sku-{secrets.token_hex(4)}",
                f"product {i}",
                category,
                price,
            )
            for i in range(count)
        ]
    finally:
        await connection.close()


async def set_price(connection: asyncpg.Connection, product_id: int, price: Decimal) -> None:
    await connection.execute(
        "UPDATE public.products SET price = $2 WHERE product_id = $1", product_id, price
    )


class SlowSource:
    """PostgreSQL loads that hold their result a while before returning: a wide race window.

    The row is read first, then the delay: exactly a load whose read precedes a change and
    whose fill lands after the change's eviction.
    """

    def __init__(self, inner: PostgresSource, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s

    async def load_many(self, kind: CacheKind, ids: Sequence[int]) -> dict[int, CacheValue]:
        values = await self.inner.load_many(kind, ids)
        await asyncio.sleep(self.delay_s)
        return values
