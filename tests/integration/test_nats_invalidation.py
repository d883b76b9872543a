"""Cache evictions reach NATS subscribers on ``cache.invalidate`` (besides Redis pub/sub).

A real product update: PostgreSQL -> Debezium -> products topic -> ProductUpdatesAgent ->
product-updates -> CacheInvalidationAgent -> Redis eviction, then NATS. A nats-py
subscriber (standing in for a service outside Python) must receive the product's key with
the product-updates position it came from, and Redis must have been evicted first.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import nats
import orjson
from nats.aio.msg import Msg

from agents.cache_invalidation import CacheInvalidationAgent, EvictedBatch
from agents.product_updates import ProductUpdatesAgent
from cache.keys import CacheKey, CacheKind
from config.settings import Settings
from serdes.registry import RegistryClient
from sinks.postgres.connection import connect
from tests.integration.cache_env import isolated, seed_products, set_price
from tests.integration.scaleout_env import require_scaleout
from tests.integration.sink_env import sink_environment


def test_product_update_eviction_reaches_a_nats_subscriber(settings: Settings) -> None:
    require_scaleout(settings)
    with sink_environment(settings) as pipeline:
        env = isolated(pipeline.settings)
        topic = f"{env.topics.cdc_prefix}.product-updates"
        env = env.model_copy(
            update={
                "topics": env.topics.model_copy(update={"product_updates": topic}),
                "nats": env.nats.model_copy(update={"invalidation_enabled": True}),
            }
        )
        try:
            asyncio.run(_run(env, topic))
        finally:
            with RegistryClient(env.registry) as registry:
                registry.delete_subject(f"{topic}-value")


async def _run(env: Settings, topic: str) -> None:
    received: list[dict[str, Any]] = []
    evicted: list[EvictedBatch] = []

    async def on_message(message: Msg) -> None:
        received.append(orjson.loads(message.data))

    subscriber = await nats.connect(
        env.nats.url, token=env.nats.token.get_secret_value() or None, connect_timeout=5
    )
    await subscriber.subscribe(env.nats.invalidation_subject, cb=on_message)
    await subscriber.flush()
    stop = asyncio.Event()
    invalidate = CacheInvalidationAgent(env, on_evicted=evicted.append)
    tasks = [
        asyncio.create_task(ProductUpdatesAgent(env).run(stop)),
        asyncio.create_task(invalidate.run(stop)),
    ]

    def messages_for(key: CacheKey) -> list[dict[str, Any]]:
        return [m for m in received if str(key) in m["keys"] and m["source"][0]["topic"] == topic]

    async def until(condition: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            await asyncio.sleep(0.02)

    try:
        [product_id] = await seed_products(env, 1, Decimal("10.00"))
        key = CacheKey(CacheKind.PRODUCT, product_id)
        await until(lambda: messages_for(key), 90, "the creation's eviction on NATS")
        connection = await connect(env.postgres)
        try:
            await set_price(connection, product_id, Decimal("11.00"))
        finally:
            await connection.close()
        await until(lambda: len(messages_for(key)) >= 2, 30, "the update's eviction on NATS")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
        await subscriber.drain()

    created, updated = messages_for(key)[:2]
    # each message names the product-updates records it came from, in order
    assert created["source"][0]["last_offset"] < updated["source"][0]["first_offset"]
    assert updated["changed_at"] is not None
    assert updated["evicted_at"] >= updated["changed_at"]
    # Redis had it first: the agent applied (and recorded) the eviction before handing it on
    assert any(key in batch.keys for batch in evicted)
    assert invalidate.nats is not None
    assert invalidate.nats.failures == 0
    assert invalidate.nats.pending == 0
    assert invalidate.nats.published >= 2
