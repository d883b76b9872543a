"""Warming loads the top products by gold sales into L2; the CLI warms, counts and flushes.

Ranking oracle, by hand: revenue of live silver items whose order is current and
revenue-bearing in gold.order_facts. Product B (3 x 10.00) > A (1 x 10.00); C's large
order is cancelled (not revenue-bearing) and its other order's fact is no longer current.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest

from cache.keys import CacheKey, CacheKind
from cache.l2 import RedisLayer
from config.settings import Settings
from sinks.postgres.connection import connect
from tests.integration.cache_env import isolated, seed_products
from tests.integration.cli import run_cli
from tests.integration.throwaway import throwaway_database


@pytest.fixture(scope="module")
def database(settings: Settings) -> Iterator[str]:
    with throwaway_database(settings, "bv_cache_warm") as name:
        yield name


async def add_sales(settings: Settings, a: int, b: int, c: int) -> None:
    connection = await connect(settings.postgres)
    try:
        facts = [  # order_id, revenue-bearing, current
            (1, True, True),
            (2, False, True),
            (3, True, False),
        ]
        for order_id, bearing, current in facts:
            await connection.execute(
                "INSERT INTO gold.order_facts (order_id, order_date, status, "
                "is_revenue_bearing, is_deleted, valid_from, is_current, source_lsn, "
                "source_bronze_id) VALUES ($1, current_date, 'X', $2, false, now(), $3, 1, $4)",
                order_id,
                bearing,
                current,
                uuid.uuid4(),
            )
        items = [(1, a, 1), (1, b, 3), (2, c, 100), (3, c, 100)]
        for n, (order_id, product_id, quantity) in enumerate(items, start=1):
            await connection.execute(
                "INSERT INTO silver.order_items (order_item_id, order_id, order_created_date, "
                "product_id, quantity, unit_price, source_lsn, source_partition, source_offset, "
                "source_committed_at, data_quality_score, quality_checks_passed, "
                "quality_issues, source_bronze_id, processing_version) VALUES "
                "($1, $2, current_date, $3, $4, 10.00, 1, 0, $1, now(), 1, '{}', '{}', $5, 1)",
                n,
                order_id,
                product_id,
                quantity,
                uuid.uuid4(),
            )
    finally:
        await connection.close()


async def cached(env: Settings, ids: list[int]) -> list[bool]:
    async with RedisLayer(env.redis, env.cache) as layer:
        return [(await layer.lookup(CacheKey(CacheKind.PRODUCT, i))).hit for i in ids]


def test_cli_warms_the_top_products_counts_and_flushes(settings: Settings, database: str) -> None:
    env = isolated(settings, database)
    a, b, c = asyncio.run(seed_products(env, 3, Decimal("10.00")))
    asyncio.run(add_sales(env, a, b, c))
    cli_env = {
        "BV_POSTGRES__DATABASE": database,
        "BV_CACHE__KEY_PREFIX": env.cache.key_prefix,
        "BV_CACHE__CHANNEL": env.cache.channel,
        "BV_CACHE__WARM_TOP_N": "2",
    }
    try:
        warm = run_cli("cache", "warm", env=cli_env, timeout=60)
        assert warm.returncode == 0, warm.stderr
        assert "warmed 2 of 2 top products" in warm.stdout
        assert asyncio.run(cached(env, [a, b, c])) == [True, True, False]
        stats = run_cli("cache", "stats", env=cli_env, timeout=60)
        assert stats.returncode == 0, stats.stderr
        assert "│ product  │          2 │" in stats.stdout
    finally:
        flush = run_cli("cache", "flush", env=cli_env, timeout=60)
    assert flush.returncode == 0, flush.stderr
    assert asyncio.run(cached(env, [a, b, c])) == [False, False, False]
