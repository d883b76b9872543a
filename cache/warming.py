"""Warming: the top products by gold sales, loaded into L2 (every ``warm_interval``).

"Top by gold sales": revenue of silver order items (quantity x unit price) whose order is
current and revenue-bearing in ``gold.order_facts`` (DESIGN.md section 8), live items
only, highest first, ties by product id. Warming fills through the same generation guard
as a read, so it can never put back a value an eviction removed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import asyncpg

from cache.keys import CacheKey, CacheKind
from cache.l2 import RedisLayer
from cache.loaders import PostgresSource, Source
from config.errors import TransientError
from observability.metrics import Metrics

log = logging.getLogger("bitvelocity.cache")

TOP_PRODUCTS_SQL = """
SELECT i.product_id
FROM silver.order_items AS i
JOIN gold.order_facts AS f
  ON f.order_id = i.order_id AND f.order_date = i.order_created_date
WHERE f.is_current AND f.is_revenue_bearing
  AND i.deleted_at IS NULL AND NOT i.hard_deleted AND i.product_id IS NOT NULL
GROUP BY i.product_id
ORDER BY sum(i.quantity * i.unit_price) DESC, i.product_id
LIMIT $1
"""


@dataclass(frozen=True, slots=True)
class WarmResult:
    products: int
    stored: int
    seconds: float


async def top_products(source: PostgresSource, limit: int) -> list[int]:
    """Ids of the ``limit`` best-selling products (see the module docstring)."""
    return await source.query_ids(TOP_PRODUCTS_SQL, limit)


async def warm(
    layer: RedisLayer, source: Source, product_ids: list[int], metrics: Metrics | None = None
) -> WarmResult:
    """Load ``product_ids`` into L2: generations first, then one query, one pipelined fill."""
    started = time.monotonic()
    keys = [CacheKey(CacheKind.PRODUCT, i) for i in product_ids]
    generations = await layer.lookup_generations(keys)
    values = await source.load_many(CacheKind.PRODUCT, product_ids) if product_ids else {}
    stored = await layer.fill_many(
        [(k, values[k.entity_id], g) for k, g in zip(keys, generations, strict=True)]
    )
    seconds = time.monotonic() - started
    if metrics is not None:
        metrics.record_cache_warm(seconds)
    return WarmResult(len(keys), sum(stored), seconds)


async def warm_periodically(
    layer: RedisLayer,
    source: PostgresSource,
    *,
    interval_s: float,
    top_n: int,
    metrics: Metrics,
    stop: asyncio.Event,
) -> None:
    """Warm now and then every ``interval_s`` until ``stop``; a failed run waits for the next."""
    while not stop.is_set():
        try:
            ids = await top_products(source, top_n)
            result = await warm(layer, source, ids, metrics)
            log.info(
                "warmed %d of %d top products in %.3f s",
                result.stored,
                result.products,
                result.seconds,
            )
        except (TransientError, asyncpg.PostgresError) as exc:
            log.warning("cache warming skipped: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except TimeoutError:
            continue
