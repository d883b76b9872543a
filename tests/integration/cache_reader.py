"""A reader process of the cache race test: many concurrent readers, one JSON report.

``python -m tests.integration.cache_reader <ids> <guard 0|1> <delay_s> <after_s>`` with
the cache and database settings in the environment. Prints ``ready`` once subscribed,
then reads until ``after_s`` seconds after the fence arrives on the invalidation channel,
and prints the reads that started after the fence: ``{"after": [[id, price, layer], ...]}``.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson

from cache.aside import CacheAside
from cache.keys import CacheKey, CacheKind
from cache.loaders import PostgresSource
from config.settings import load_settings
from tests.integration.cache_env import SlowSource

READERS = 16


async def main(ids: list[int], guard: bool, delay_s: float, after_s: float) -> None:
    settings = load_settings()
    inner = PostgresSource(settings.postgres, max_size=4)
    await inner.start()
    cache = CacheAside(settings, source=SlowSource(inner, delay_s), guard=guard)
    await cache.start()
    await cache.listener.wait_connected(10)
    print("ready", flush=True)
    after: list[tuple[int, str, str]] = []
    total = 0
    fenced_at: float | None = None
    deadline = time.monotonic() + 120

    async def reader(offset: int) -> None:
        nonlocal total, fenced_at
        i = offset
        while time.monotonic() < deadline:
            fenced = bool(cache.fences)
            if fenced and fenced_at is None:
                fenced_at = time.monotonic()
            if fenced_at is not None and time.monotonic() > fenced_at + after_s:
                return
            product_id = ids[i % len(ids)]
            i += 1
            value, layer = await cache.get_with_layer(CacheKey(CacheKind.PRODUCT, product_id))
            total += 1
            if fenced:
                assert value is not None
                after.append((product_id, value["price"], layer))
            await asyncio.sleep(0)

    await asyncio.gather(*(reader(n) for n in range(READERS)))
    await cache.stop()
    await inner.stop()
    print(orjson.dumps({"after": after, "total": total}).decode(), flush=True)


if __name__ == "__main__":
    asyncio.run(
        main(
            [int(i) for i in sys.argv[1].split(",")],
            sys.argv[2] == "1",
            float(sys.argv[3]),
            float(sys.argv[4]),
        )
    )
