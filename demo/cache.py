"""The demo's cache round: a price change in the OLTP database evicts the cached product.

A product is read through the cache (``cache.aside``), its price is changed by a plain
UPDATE, and the round waits for the eviction the CDC path applies (the key's generation in
Redis is renewed by every eviction, ``cache.l2.RedisLayer.evict``), then reads again. The
time measured is from the UPDATE's commit returning to the eviction being visible in Redis.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from decimal import Decimal

from cache.aside import CacheAside
from cache.keys import CacheKey, CacheKind
from config.settings import Settings
from sinks.postgres.connection import connect


@dataclass(frozen=True)
class CacheRound:
    product_id: int
    old_price: str
    new_price: str
    first_read_layer: str
    evicted_after_s: float | None
    price_after: str | None
    after_read_layer: str

    @property
    def ok(self) -> bool:
        return self.evicted_after_s is not None and self.price_after == self.new_price


async def cache_round(settings: Settings, timeout_s: float = 15.0) -> CacheRound:
    """Read, change the price, observe the eviction, read again (the running cache agents
    do the eviction); ``ok`` is False when the new price was not served in time."""
    connection = await connect(settings.postgres)
    try:
        product_id = await connection.fetchval(
            "SELECT min(product_id) FROM public.products WHERE deleted_at IS NULL"
        )
        if product_id is None:
            raise LookupError("no live product in public.products for the cache round")
        key = CacheKey(CacheKind.PRODUCT, int(product_id))
        async with CacheAside(settings) as cache:
            await cache.listener.wait_connected(5)
            value, first_layer = await cache.get_with_layer(key)
            old = str((value or {}).get("price"))
            new = str(Decimal(old) + Decimal("1.00"))
            [generation] = await cache.l2.lookup_generations([key])
            await connection.execute(
                "UPDATE public.products SET price = $2 WHERE product_id = $1",
                key.entity_id,
                Decimal(new),
            )
            committed = time.monotonic()
            deadline = committed + timeout_s
            evicted_after: float | None = None
            seen: float | None = None
            price, layer = None, "none"
            while time.monotonic() < deadline:
                [current] = await cache.l2.lookup_generations([key])
                if current != generation:  # an eviction happened since the last look
                    seen, generation = time.monotonic() - committed, current
                if seen is not None:  # L1 may answer until the broadcast reached it
                    value, layer = await cache.get_with_layer(key)
                    price = str((value or {}).get("price"))
                    if price == new:  # ours, not one of an older change still in flight
                        evicted_after = seen
                        break
                await asyncio.sleep(0.005)
            return CacheRound(key.entity_id, old, new, first_layer, evicted_after, price, layer)
    finally:
        await connection.close()
