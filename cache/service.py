"""One-shot cache operations: warm the top products, count entries, flush.

The long-running cache process (the invalidation agents plus the periodic warmer) is
``agents/cache_service.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cache.l2 import RedisLayer
from cache.loaders import PostgresSource
from cache.warming import WarmResult, top_products, warm
from config.settings import Settings
from observability.metrics import Metrics, default_metrics


@dataclass(frozen=True, slots=True)
class CacheStats:
    entries: dict[str, int]
    subscribers: int


async def warm_once(settings: Settings, metrics: Metrics | None = None) -> WarmResult:
    cache = settings.cache
    async with (
        PostgresSource(settings.postgres, max_size=cache.pool_max_size) as source,
        RedisLayer(settings.redis, cache) as layer,
    ):
        ids = await top_products(source, cache.warm_top_n)
        return await warm(layer, source, ids, metrics or default_metrics())


async def cache_stats(settings: Settings) -> CacheStats:
    async with RedisLayer(settings.redis, settings.cache) as layer:
        entries = await layer.count_entries()
        return CacheStats({k.value: n for k, n in entries.items()}, await layer.subscribers())


async def flush_cache(settings: Settings) -> int:
    async with RedisLayer(settings.redis, settings.cache) as layer:
        return await layer.flush()
