"""A price change in the OLTP database reaches the cache within 2 s at rest, through CDC.

PostgreSQL -> Debezium -> products topic -> ProductUpdatesAgent -> product-updates (Avro)
-> CacheInvalidationAgent -> Redis eviction + broadcast -> L1. Latency is measured from
the UPDATE's commit returning to (a) the eviction being applied and (b) the cache in this
process answering the new price.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from decimal import Decimal

from agents.cache_invalidation import CacheInvalidationAgent, EvictedBatch
from agents.product_updates import ProductUpdatesAgent
from cache.aside import CacheAside
from cache.keys import CacheKey, CacheKind
from config.settings import Settings
from serdes.registry import RegistryClient
from sinks.postgres.connection import connect
from tests.integration.cache_env import isolated, seed_products, set_price
from tests.integration.sink_env import sink_environment

CHANGES = 20


async def until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll every 5 ms; the monotonic time the condition first held."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.005)
    return time.monotonic()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def test_price_change_is_visible_through_the_cache_within_two_seconds(settings: Settings) -> None:
    with sink_environment(settings) as pipeline:
        env = isolated(pipeline.settings)
        topic = f"{env.topics.cdc_prefix}.product-updates"
        env = env.model_copy(
            update={"topics": env.topics.model_copy(update={"product_updates": topic})}
        )
        try:
            asyncio.run(_measure(env))
        finally:
            with RegistryClient(env.registry) as registry:
                registry.delete_subject(f"{topic}-value")


async def _measure(env: Settings) -> None:
    evicted: list[tuple[float, EvictedBatch]] = []
    stop = asyncio.Event()
    derive = ProductUpdatesAgent(env)
    invalidate = CacheInvalidationAgent(
        env, on_evicted=lambda batch: evicted.append((time.monotonic(), batch))
    )
    tasks = [asyncio.create_task(derive.run(stop)), asyncio.create_task(invalidate.run(stop))]

    def evicted_version(key: CacheKey, version: int) -> float | None:
        for at, batch in evicted:
            if key in batch.keys and any(u.version >= version for u in batch.updates):
                return at
        return None

    try:
        async with CacheAside(env) as cache:
            await cache.listener.wait_connected(5)
            [product_id] = await seed_products(env, 1, Decimal("10.00"))
            key = CacheKey(CacheKind.PRODUCT, product_id)
            # the pipeline is warm once the product's creation was evicted
            await until(lambda: evicted_version(key, 1) is not None, 60, "the first eviction")
            assert (await cache.get(key) or {})["price"] == "10.00"
            to_eviction: list[float] = []
            to_visible: list[float] = []
            connection = await connect(env.postgres)
            try:
                for n in range(1, CHANGES + 1):
                    price = f"{10 + n}.00"
                    await set_price(connection, product_id, Decimal(price))
                    committed = time.monotonic()
                    visible: list[float] = []

                    async def seen(price: str = price, visible: list[float] = visible) -> None:
                        deadline = time.monotonic() + 10
                        while time.monotonic() < deadline:
                            if (await cache.get(key) or {}).get("price") == price:
                                visible.append(time.monotonic())
                                return
                            await asyncio.sleep(0.002)

                    await seen()
                    assert visible, f"price {price} not visible through the cache in 10 s"
                    at = await until(
                        lambda n=n: evicted_version(key, n + 1) is not None, 10, "eviction"
                    )
                    to_eviction.append((evicted_version(key, n + 1) or at) - committed)
                    to_visible.append(visible[0] - committed)
                # a category change evicts the product and both categories
                old_category = (await cache.get(key) or {})["category_id"]
                new_category = await connection.fetchval(
                    "INSERT INTO public.categories (name) VALUES ('moved-to') RETURNING category_id"
                )
                await connection.execute(
                    "UPDATE public.products SET category_id = $2 WHERE product_id = $1",
                    product_id,
                    new_category,
                )
                moved = CacheKey(CacheKind.CATEGORY, new_category)
                await until(
                    lambda: any(moved in b.keys for _, b in evicted), 10, "category eviction"
                )
                batch = next(b for _, b in evicted if moved in b.keys)
                assert CacheKey(CacheKind.CATEGORY, old_category) in batch.keys
                assert (await cache.get(key) or {})["category_id"] == new_category
            finally:
                await connection.close()
            await cache.l2.flush()
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    report = {
        "commit->eviction": to_eviction,
        "commit->visible in cache": to_visible,
    }
    for name, values in report.items():
        print(
            f"{name}: n={len(values)} p50={statistics.median(values) * 1000:.0f} ms "
            f"p99={percentile(values, 0.99) * 1000:.0f} ms max={max(values) * 1000:.0f} ms"
        )
    assert percentile(to_visible, 0.99) < 2.0
    assert percentile(to_eviction, 0.99) < 2.0
