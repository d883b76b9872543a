"""L2: the Redis half of the cache, with generation-guarded fills and batched evictions.

Every key has a generation (``<prefix>:gen:<kind>:<id>``): an eviction deletes the value
and sets a fresh random generation in the same MULTI, then broadcasts the keys on the
invalidation channel. A fill reads the generation together with the (missing) value,
loads from PostgreSQL, and stores through a Lua script only if the generation is still
the one it read, so an eviction that raced the fill wins (invariant I5). Random tokens
rather than counters: a Redis that restarted empty cannot hand an old number back.

Redis being unreachable is a ``CacheUnavailableError`` (transient): the caller degrades to
PostgreSQL, and for ``retry_after_s`` this layer answers "unavailable" at once instead of
waiting on a dead socket, then tries again by itself.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from cache.codec import CacheValue, Invalidation, decode_entry, encode_entry, encode_invalidation
from cache.keys import CacheKey, CacheKind, KeySpace
from config.errors import TransientError
from config.lifecycle import AsyncStartStop
from config.settings import CacheSettings, RedisSettings

_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

#: KEYS: value, generation; ARGV: entry, generation read ('' = none), ttl ms.
_GUARDED_FILL = """
local current = redis.call('GET', KEYS[2])
if current == false then current = '' end
if current ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""


class CacheUnavailableError(TransientError):
    """Redis (L2) could not be reached: read from PostgreSQL instead, try Redis later."""


@dataclass(frozen=True, slots=True)
class L2Lookup:
    """What one GET found: the value (when ``hit``) and the key's generation at that moment."""

    hit: bool
    value: CacheValue
    generation: str | None


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


def new_generation() -> str:
    return secrets.token_hex(8)


class RedisLayer(AsyncStartStop):
    """L2 operations on one Redis; ``start()``/``stop()`` or ``async with``."""

    def __init__(
        self, redis_settings: RedisSettings, cache: CacheSettings, *, guard: bool = True
    ) -> None:
        self._redis_settings = redis_settings
        self._settings = cache
        self.keys = KeySpace(cache.key_prefix)
        self.guard = guard
        self._ttl_ms = int(cache.l2_ttl.total_seconds() * 1000)
        self._generation_ttl_ms = int(cache.generation_ttl.total_seconds() * 1000)
        self._client: aioredis.Redis | None = None
        self._fill_script: redis.commands.core.AsyncScript | None = None
        self._down_until = 0.0

    @property
    def address(self) -> str:
        return f"{self._redis_settings.host}:{self._redis_settings.port}"

    def client(self, *, for_pubsub: bool = False) -> aioredis.Redis:
        """A new client for this Redis (the layer's own, or one for a subscriber)."""
        r, timeout = self._redis_settings, self._settings.redis_timeout_s
        username, password = r.client_auth()
        return aioredis.Redis(
            host=r.host,
            port=r.port,
            db=r.db,
            username=username,
            password=password,
            socket_timeout=None if for_pubsub else timeout,
            socket_connect_timeout=timeout,
            health_check_interval=5 if for_pubsub else 0,
            # No hidden retries or silent re-subscribes: a failure must reach us, so reads
            # degrade at once and a subscriber knows it may have missed messages.
            retry=Retry(NoBackoff(), 0),
        )

    async def start(self) -> None:
        self._client = self.client()
        self._fill_script = self._client.register_script(_GUARDED_FILL)

    async def stop(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    # -- availability -----------------------------------------------------------------------
    @property
    def available(self) -> bool:
        """False for a short while after a failure: callers go straight to PostgreSQL."""
        return time.monotonic() >= self._down_until

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise CacheUnavailableError(f"cache L2 at {self.address} is not started")
        if not self.available:
            raise CacheUnavailableError(f"cache L2 at {self.address} failed recently")
        return self._client

    def _failed(self, what: str, exc: Exception) -> CacheUnavailableError:
        self._down_until = time.monotonic() + self._settings.redis_retry_after_s
        return CacheUnavailableError(
            f"cache L2 at {self.address}: {what} failed ({type(exc).__name__}: {exc}); "
            "reading from PostgreSQL until Redis answers again"
        )

    # -- reads and fills ----------------------------------------------------------------------
    async def lookup(self, key: CacheKey) -> L2Lookup:
        """The value and generation of ``key`` in one round trip."""
        client = self._redis()
        try:
            data, generation = await client.mget(self.keys.value(key), self.keys.generation(key))
        except _REDIS_DOWN as exc:
            raise self._failed(f"GET {key}", exc) from exc
        token = _text(generation)
        if data is None:
            return L2Lookup(False, None, token)
        return L2Lookup(
            True, decode_entry(data if isinstance(data, bytes) else data.encode()), token
        )

    async def fill(self, key: CacheKey, value: CacheValue, generation: str | None) -> bool:
        """Store ``value`` unless ``key`` was evicted since ``generation`` was read."""
        return (await self.fill_many([(key, value, generation)]))[0]

    async def fill_many(
        self, fills: Sequence[tuple[CacheKey, CacheValue, str | None]]
    ) -> list[bool]:
        """Guarded fills in one pipelined round trip; True for each value stored."""
        client = self._redis()
        assert self._fill_script is not None
        try:
            async with client.pipeline(transaction=False) as pipe:
                for key, value, generation in fills:
                    entry = encode_entry(value)
                    if self.guard:
                        await self._fill_script(
                            keys=[self.keys.value(key), self.keys.generation(key)],
                            args=[entry, generation or "", self._ttl_ms],
                            client=pipe,
                        )
                    else:  # the unguarded fill of the race test's failing run
                        pipe.set(self.keys.value(key), entry, px=self._ttl_ms)
                results = await pipe.execute()
        except _REDIS_DOWN as exc:
            raise self._failed(f"fill of {len(fills)} keys", exc) from exc
        return [bool(r) for r in results]

    async def lookup_generations(self, keys: Sequence[CacheKey]) -> list[str | None]:
        """Current generations of ``keys`` (read before loading, for ``fill_many``)."""
        if not keys:
            return []
        client = self._redis()
        try:
            values = await client.mget([self.keys.generation(k) for k in keys])
        except _REDIS_DOWN as exc:
            raise self._failed(f"generations of {len(keys)} keys", exc) from exc
        return [_text(v) for v in values]

    # -- evictions --------------------------------------------------------------------------
    async def evict(self, keys: Sequence[CacheKey], *, fence: str | None = None) -> int:
        """Delete ``keys``, renew their generations, broadcast them: one MULTI round trip.

        Returns how many values were present. Idempotent: evicting twice only costs a miss.
        """
        client = self._redis()
        generation = new_generation()
        try:
            async with client.pipeline(transaction=True) as pipe:
                for key in keys:
                    pipe.delete(self.keys.value(key))
                    pipe.set(self.keys.generation(key), generation, px=self._generation_ttl_ms)
                message = Invalidation(tuple(keys), fence)
                pipe.publish(self._settings.channel, encode_invalidation(message))
                results = await pipe.execute()
        except _REDIS_DOWN as exc:
            raise self._failed(f"eviction of {len(keys)} keys", exc) from exc
        return sum(int(r) for r in results[0 : 2 * len(keys) : 2])

    async def publish(self, message: Invalidation) -> int:
        """Broadcast ``message``; returns how many subscribers Redis delivered it to."""
        client = self._redis()
        try:
            return int(await client.publish(self._settings.channel, encode_invalidation(message)))
        except _REDIS_DOWN as exc:
            raise self._failed("publish", exc) from exc

    async def flush(self) -> int:
        """Delete every key of this key space and tell every L1 to drop everything."""
        client = self._redis()
        deleted = 0
        try:
            batch: list[bytes] = []
            async for name in client.scan_iter(match=self.keys.pattern(), count=1000):
                batch.append(name)
                if len(batch) >= 1000:
                    deleted += await client.unlink(*batch)
                    batch = []
            if batch:
                deleted += await client.unlink(*batch)
        except _REDIS_DOWN as exc:
            raise self._failed("flush", exc) from exc
        await self.publish(Invalidation(everything=True))
        return deleted

    async def count_entries(self) -> dict[CacheKind, int]:
        """Values held per kind (a SCAN: for operators, not for hot paths)."""
        client = self._redis()
        counts = dict.fromkeys(CacheKind, 0)
        try:
            for kind in CacheKind:
                pattern = f"{self.keys.prefix}:{kind.value}:*"
                async for _ in client.scan_iter(match=pattern, count=1000):
                    counts[kind] += 1
        except _REDIS_DOWN as exc:
            raise self._failed("stats", exc) from exc
        return counts

    async def subscribers(self) -> int:
        """L1 caches listening on the invalidation channel now."""
        client = self._redis()
        try:
            numsub = await client.pubsub_numsub(self._settings.channel)
        except _REDIS_DOWN as exc:
            raise self._failed("PUBSUB NUMSUB", exc) from exc
        return int(numsub[0][1]) if numsub else 0
