"""Cache latency and invalidation rate, with raw redis-py GET as baseline, in one run.

Run: ``python -m bench.cache [--requests N] [--database DB]`` against the local stack
(products of the configured database are read, never written; keys live under their own
prefix and are flushed afterwards). Prints a table and writes ``bench/results/cache.json``.

- raw GET: ``redis.asyncio`` GET of one small key (what any L2 hit costs at least);
- L1 hit: ``CacheAside.get`` answered in process;
- L2 hit: L1 disabled, value in Redis (one MGET + decode);
- miss: L1 disabled, key evicted first (untimed): MGET, PostgreSQL load, Lua guarded fill;
- invalidations/s: keys evicted per second, one MULTI per batch of 100 (the agent's shape),
  and one key per round trip.
Not a test: no assertion here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cache.aside import CacheAside
from cache.keys import CacheKey, CacheKind
from cache.l2 import RedisLayer
from cache.loaders import PostgresSource
from config.errors import ConfigurationError
from config.settings import Settings, load_settings

RESULTS = Path(__file__).resolve().parent / "results" / "cache.json"


async def timed(n: int, operation: Callable[[int], Awaitable[Any]]) -> list[float]:
    """Latency of ``n`` sequential calls in microseconds."""
    samples = []
    for i in range(n):
        started = time.perf_counter()
        await operation(i)
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_us": statistics.median(ordered),
        "p99_us": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "mean_us": statistics.fmean(ordered),
        "ops_per_s": 1e6 / statistics.fmean(ordered),
    }


async def run(settings: Settings, requests: int) -> dict[str, Any]:
    prefix = f"bv:bench:{secrets.token_hex(3)}"
    env = settings.model_copy(
        update={
            "cache": settings.cache.model_copy(
                update={"key_prefix": f"{prefix}:cache", "channel": f"{prefix}:inv"}
            )
        }
    )
    results: dict[str, Any] = {}
    async with (
        PostgresSource(env.postgres) as source,
        RedisLayer(env.redis, env.cache) as layer,
    ):
        ids = await source.query_ids(
            "SELECT product_id FROM public.products WHERE deleted_at IS NULL "
            "ORDER BY product_id LIMIT 100"
        )
        if not ids:
            raise ConfigurationError(
                f"no products in {env.postgres.database}: run `bitvelocity loadgen` first"
            )
        keys = [CacheKey(CacheKind.PRODUCT, i) for i in ids]
        raw = layer.client()
        try:
            await raw.set(f"{prefix}:raw", b'{"v":{"price":"1.00"}}', ex=600)
            results["raw redis GET"] = summary(
                await timed(requests, lambda _: raw.get(f"{prefix}:raw"))
            )
        finally:
            await raw.aclose()
        async with CacheAside(env, source=source) as cache:
            await cache.listener.wait_connected(5)
            for key in keys:
                await cache.get(key)
            results["L1 hit"] = summary(
                await timed(requests, lambda i: cache.get(keys[i % len(keys)]))
            )
        async with CacheAside(env, source=source, l1_enabled=False) as cache:
            for key in keys:
                await cache.get(key)
            results["L2 hit"] = summary(
                await timed(requests, lambda i: cache.get(keys[i % len(keys)]))
            )
            misses = []
            for i in range(min(requests, 2000)):
                key = keys[i % len(keys)]
                await layer.evict([key])
                started = time.perf_counter()
                await cache.get(key)
                misses.append((time.perf_counter() - started) * 1e6)
            results["miss (PostgreSQL + guarded fill)"] = summary(misses)
        batches = max(1, requests // 100)
        started = time.perf_counter()
        for _ in range(batches):
            await layer.evict(keys)
        batched = len(keys) * batches / (time.perf_counter() - started)
        started = time.perf_counter()
        singles = min(requests, 2000)
        for i in range(singles):
            await layer.evict([keys[i % len(keys)]])
        single = singles / (time.perf_counter() - started)
        results["invalidations/s"] = {
            f"batched ({len(keys)} keys per MULTI)": batched,
            "one key per round trip": single,
        }
        await layer.flush()
    return results


def print_table(results: dict[str, Any]) -> None:
    print(f"{'operation':36} {'p50 us':>9} {'p99 us':>9} {'ops/s':>10} {'x raw GET':>10}")
    raw = results["raw redis GET"]["p50_us"]
    for name, row in results.items():
        if "p50_us" not in row:
            continue
        print(
            f"{name:36} {row['p50_us']:9.1f} {row['p99_us']:9.1f} {row['ops_per_s']:10.0f} "
            f"{row['p50_us'] / raw:10.2f}"
        )
    for name, rate in results["invalidations/s"].items():
        print(f"{'invalidations/s, ' + name:56} {rate:10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--database", default=None)
    args = parser.parse_args()
    settings = load_settings()
    if args.database:
        settings = settings.model_copy(
            update={"postgres": settings.postgres.model_copy(update={"database": args.database})}
        )
    results = asyncio.run(run(settings, args.requests))
    print_table(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "cache",
                "at": datetime.now(UTC).isoformat(),
                "python": platform.python_version(),
                "requests": args.requests,
                "results": results,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
