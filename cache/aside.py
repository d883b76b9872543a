"""Cache-aside reads through L1 (process) and L2 (Redis) to PostgreSQL.

Invariant I5: no stale value survives an invalidation. Once an eviction of a key has been
applied in Redis and its broadcast reached this process, no read that starts afterwards
returns a value older than the change. Four mechanisms keep it:

1. L2 fills are generation-guarded (``cache.l2``): the generation is read with the miss,
   before loading, and the Lua fill stores only if it is unchanged, so a load that began
   before the change cannot land after its eviction.
2. L1 fills take a ticket before reading (``cache.l1``); an invalidation since the ticket
   turns the ``put`` into a no-op. A refused L2 fill is never kept in L1 either.
3. An invalidation also ``forget``s the key's in-flight single-flight load, so later
   readers start a fresh load instead of joining one that read the old row.
4. L1 keeps nothing while the invalidation channel is down, drops everything when it is
   lost or regained, and expires entries after a short TTL (the net under it all).

``guard=False`` disables 1 and 2: only the race test uses it, to show that it then fails.
Redis failures never reach the caller: reads degrade to PostgreSQL and recover by
themselves (``RedisLayer.available``); PostgreSQL failures do reach it (``TransientError``).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from types import TracebackType

from cache.codec import CacheValue, Invalidation
from cache.keys import CacheKey, CacheKind
from cache.l1 import LocalCache
from cache.l2 import CacheUnavailableError, RedisLayer
from cache.loaders import PostgresSource, Source, load_one
from cache.single_flight import SingleFlight
from cache.subscriber import InvalidationListener
from config.settings import Settings
from observability.metrics import Metrics, default_metrics

log = logging.getLogger("bitvelocity.cache")
Layer = str  # "l1" | "l2" | "db"


@dataclass(frozen=True, slots=True)
class _Loaded:
    value: CacheValue
    generation: str | None
    #: False when L2 was unavailable or refused the fill: the value must not go into L1.
    keep: bool
    layer: Layer


class CacheAside:
    """Product, category and customer caches of one process; ``start()``/``stop()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        source: Source | None = None,
        database: str | None = None,
        metrics: Metrics | None = None,
        guard: bool = True,
        l1_enabled: bool = True,
        metrics_every: int = 256,
    ) -> None:
        cache = settings.cache
        self.settings = settings
        self._own_source = source is None
        self.source: Source = source or PostgresSource(
            settings.postgres, database, cache.pool_max_size
        )
        self.l2 = RedisLayer(settings.redis, cache, guard=guard)
        self.l1 = LocalCache(cache.l1_ttl.total_seconds(), cache.l1_max_entries, guard=guard)
        self.l1_enabled = l1_enabled
        self.flights: SingleFlight[CacheKey, _Loaded] = SingleFlight()
        self.listener = InvalidationListener(
            lambda: self.l2.client(for_pubsub=True),
            cache.channel,
            self._on_invalidation,
            self._on_channel_lost,
        )
        self.metrics = metrics or default_metrics()
        self._metrics_every = metrics_every
        self._pending: Counter[tuple[str, str, str]] = Counter()
        self._pending_total = 0
        #: Fences seen on the channel, in order (tests, ``flush``).
        self.fences: list[str] = []

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        if self._own_source and isinstance(self.source, PostgresSource):
            await self.source.start()
        await self.l2.start()
        if self.l1_enabled:
            await self.listener.start()

    async def stop(self) -> None:
        await self.listener.stop()
        await self.l2.stop()
        if self._own_source and isinstance(self.source, PostgresSource):
            await self.source.stop()
        self.flush_metrics()

    async def __aenter__(self) -> CacheAside:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- reads --------------------------------------------------------------------------------
    async def product(self, product_id: int) -> CacheValue:
        return await self.get(CacheKey(CacheKind.PRODUCT, product_id))

    async def category(self, category_id: int) -> CacheValue:
        return await self.get(CacheKey(CacheKind.CATEGORY, category_id))

    async def customer(self, customer_id: int) -> CacheValue:
        return await self.get(CacheKey(CacheKind.CUSTOMER, customer_id))

    async def get(self, key: CacheKey) -> CacheValue:
        """The value of ``key``: L1, else L2, else PostgreSQL (one load per key at a time)."""
        return (await self.get_with_layer(key))[0]

    async def get_with_layer(self, key: CacheKey) -> tuple[CacheValue, Layer]:
        """``get``, and which layer answered: ``l1``, ``l2`` or ``db``."""
        kind = key.kind.value
        if self.l1_enabled:
            entry = self.l1.get(key)
            if entry is not None:
                self._count(kind, "l1", "hit")
                return entry.value, "l1"
            self._count(kind, "l1", "miss")
        ticket = self.l1.ticket()
        loaded = await self.flights.run(key, lambda: self._load(key))
        if loaded.keep and self.l1_enabled and self.listener.connected.is_set():
            self.l1.put(key, loaded.value, loaded.generation, ticket)
        return loaded.value, loaded.layer

    async def _load(self, key: CacheKey) -> _Loaded:
        kind = key.kind.value
        generation: str | None = None
        l2_up = self.l2.available
        if l2_up:
            try:
                found = await self.l2.lookup(key)
            except CacheUnavailableError as exc:
                log.warning("%s", exc)
                l2_up = False
            else:
                if found.hit:
                    self._count(kind, "l2", "hit")
                    return _Loaded(found.value, found.generation, True, "l2")
                self._count(kind, "l2", "miss")
                generation = found.generation
        value = await load_one(self.source, key)
        if not l2_up:
            return _Loaded(value, None, False, "db")
        try:
            stored = await self.l2.fill(key, value, generation)
        except CacheUnavailableError as exc:
            log.warning("%s", exc)
            return _Loaded(value, None, False, "db")
        return _Loaded(value, generation, stored or not self.l2.guard, "db")

    # -- invalidation -------------------------------------------------------------------------
    def _on_invalidation(self, message: Invalidation) -> None:
        if message.everything:
            self.l1.invalidate_all()
            self.flights.forget_all()
        elif message.keys:
            self.l1.invalidate(message.keys)
            for key in message.keys:
                self.flights.forget(key)
        if message.fence is not None:
            self.fences.append(message.fence)

    def _on_channel_lost(self) -> None:
        self.l1.invalidate_all()
        self.flights.forget_all()

    # -- metrics ------------------------------------------------------------------------------
    def _count(self, cache: str, layer: str, result: str) -> None:
        self._pending[(cache, layer, result)] += 1
        self._pending_total += 1
        if self._pending_total >= self._metrics_every:
            self.flush_metrics()

    def flush_metrics(self) -> None:
        """Hand the counts gathered since the last flush to Prometheus (batched, cheap)."""
        pending, self._pending, self._pending_total = self._pending, Counter(), 0
        for (cache, layer, result), count in pending.items():
            if result == "hit":
                self.metrics.record_cache(cache, layer, count, 0)
            else:
                self.metrics.record_cache(cache, layer, 0, count)
