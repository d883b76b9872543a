"""The cache's long-running process: both invalidation agents plus the periodic warmer.

``bitvelocity cache run`` starts it; SIGTERM/SIGINT finishes the batch in flight and exits.
Kept apart from ``bitvelocity worker`` so the cache can run (and scale) on its own.
"""

from __future__ import annotations

import asyncio
import signal

from agents.cache_invalidation import CacheInvalidationAgent
from agents.product_updates import ProductUpdatesAgent
from cache.l2 import RedisLayer
from cache.loaders import PostgresSource
from cache.warming import warm_periodically
from config.settings import Settings
from observability.metrics import default_metrics


async def run_cache_service(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics = default_metrics()
    cache = settings.cache
    async with (
        PostgresSource(settings.postgres, max_size=cache.pool_max_size) as source,
        RedisLayer(settings.redis, cache) as layer,
    ):
        await asyncio.gather(
            ProductUpdatesAgent(settings).run(stop),
            CacheInvalidationAgent(settings, metrics=metrics).run(stop),
            warm_periodically(
                layer,
                source,
                interval_s=cache.warm_interval.total_seconds(),
                top_n=cache.warm_top_n,
                metrics=metrics,
                stop=stop,
            ),
        )
