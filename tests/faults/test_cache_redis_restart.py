"""Redis restarts while readers run: answers come from PostgreSQL, no exception reaches a
caller, and L2 and the invalidation channel come back by themselves (I7 for the cache)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from cache.aside import CacheAside
from cache.keys import CacheKey, CacheKind
from cache.l2 import RedisLayer
from config.settings import Settings
from sinks.postgres.connection import connect
from tests.faults.own_redis import OwnRedis
from tests.integration.cache_env import isolated, seed_products, set_price
from tests.integration.throwaway import throwaway_database


@pytest.fixture(scope="module")
def database(settings: Settings) -> Iterator[str]:
    with throwaway_database(settings, "bv_cache_fault", warehouse=False) as name:
        yield name


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_reads_survive_a_redis_restart_and_recover(
    settings: Settings, database: str, own_redis: OwnRedis
) -> None:
    env = isolated(settings, database)
    redis = env.redis.model_copy(update={"port": own_redis.port, "password": SecretStr("")})
    env = env.model_copy(update={"redis": redis})
    ids = await seed_products(env, 3, Decimal("5.00"))
    keys = [CacheKey(CacheKind.PRODUCT, i) for i in ids]
    layers: Counter[str] = Counter()
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async with CacheAside(env) as cache:
        await cache.listener.wait_connected(5)

        async def reader() -> None:
            while not stop.is_set():
                for key in keys:
                    try:
                        value, layer = await cache.get_with_layer(key)
                        assert value is not None
                        layers[layer] += 1
                    except Exception as exc:  # noqa: BLE001 - the test counts any escape
                        errors.append(exc)
                await asyncio.sleep(0.001)

        async def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
            deadline = time.monotonic() + timeout_s
            while not condition():
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                await asyncio.sleep(0.02)

        readers = [asyncio.create_task(reader()) for _ in range(4)]
        await until(lambda: layers["l1"] > 100, 10, "L1 hits before the outage")
        own_redis.stop()
        down_at = time.monotonic()
        await until(lambda: not cache.listener.connected.is_set(), 10, "the channel to drop")
        before = layers["db"]
        await until(lambda: layers["db"] > before + 50, 10, "reads from PostgreSQL")
        # while Redis is down a price change is still seen: nothing is cached meanwhile
        connection = await connect(env.postgres)
        try:
            await set_price(connection, ids[0], Decimal("6.00"))
        finally:
            await connection.close()
        assert (await cache.get(keys[0]) or {})["price"] == "6.00"
        own_redis.start()
        await cache.listener.wait_connected(15)
        recovered = time.monotonic() - down_at
        hits_before = layers["l2"] + layers["l1"]
        await until(lambda: layers["l2"] + layers["l1"] > hits_before + 100, 15, "hits again")
        assert (await cache.get(keys[0]) or {})["price"] == "6.00"
        stop.set()
        await asyncio.gather(*readers)
        async with RedisLayer(env.redis, env.cache) as layer:
            assert (await layer.lookup(keys[0])).value == (await cache.get(keys[0]))
    assert errors == []
    print(f"layers {dict(layers)}; channel back {recovered:.2f} s after the outage began")
