"""The consumer both cache agents use: small, quick batches (an eviction should not wait)."""

from __future__ import annotations

from config.settings import Settings
from streams.runtime import ConsumerRuntime, ConsumerSpec


def cache_consumer(settings: Settings, name: str, group_id: str, topic: str) -> ConsumerRuntime:
    """A runtime over ``topic`` cut by the cache's batch settings, fetching every 20 ms."""
    return ConsumerRuntime(
        settings.kafka.bootstrap_servers,
        ConsumerSpec(
            name=name,
            group_id=group_id,
            topics=(topic,),
            max_records=settings.cache.batch_max_records,
            max_wait_ms=settings.cache.batch_max_ms,
            fetch_wait_max_ms=20,
        ),
    )
