"""The Redis feature store: hash ``bv:features:customer:<id>``, one field per feature.

Every hash carries ``_ts`` (as-of, epoch milliseconds) and ``_version`` (feature version).
A Lua script compares and sets atomically: a write whose ``_ts`` is older than the stored
one (or equal with a version not newer) is refused, so a late or replayed write can never
replace a newer value. A batch is one pipeline: one round trip however many customers.
A null feature is stored as the empty string. The store is a ``BatchSink`` of
``CustomerFeatures`` (``sinks/contract.py``): ``write`` returns how many hashes it set;
``compare_and_set`` tells which.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import redis.asyncio as redis_async
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.errors import PermanentError, TransientError
from config.settings import RedisSettings
from sinks.contract import SinkLifecycle
from tables.features import CustomerFeatures

CAS_SCRIPT = """
local stored = redis.call('HMGET', KEYS[1], '_ts', '_version')
local ts = tonumber(ARGV[1])
local version = tonumber(ARGV[2])
if stored[1] then
    local old_ts = tonumber(stored[1])
    if old_ts > ts or (old_ts == ts and tonumber(stored[2] or '0') >= version) then
        return 0
    end
end
redis.call('HSET', KEYS[1], '_ts', ARGV[1], '_version', ARGV[2], unpack(ARGV, 3))
return 1
"""


class FeatureStoreNotStartedError(PermanentError):
    """The feature store was used before ``start()`` (a wiring bug)."""


class FeatureStoreUnavailableError(TransientError):
    """Redis did not take the batch (down, restarting, timed out): write it again."""


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def feature_fields(features: CustomerFeatures) -> dict[str, str]:
    """The hash fields of one customer (besides ``_ts`` and ``_version``)."""
    v = features.values
    return {
        "order_count_last_30_days": _text(v.order_count_last_30_days),
        "total_spent_last_30_days": _text(v.total_spent_last_30_days),
        "avg_order_value": _text(v.avg_order_value),
        "preferred_category": _text(v.preferred_category),
        "lifetime_order_count": _text(v.lifetime_order_count),
        "lifetime_value": _text(v.lifetime_value),
        "lifetime_segment": _text(v.lifetime_segment),
        "features_updated_at": _text(features.features_updated_at),
        "feature_version": _text(features.feature_version),
        "as_of": _text(features.as_of),
    }


class RedisFeatureStore(SinkLifecycle):
    """``start()``/``stop()`` or ``async with``; ``write(batch)`` is one pipelined round trip."""

    def __init__(self, settings: RedisSettings, *, prefix: str, db: int | None = None) -> None:
        self.settings = settings
        self.prefix = prefix
        self.db = settings.db if db is None else db
        self.round_trips = 0
        self._client: redis_async.Redis | None = None
        self._sha: str | None = None

    async def start(self) -> None:
        username, password = self.settings.client_auth()
        self._client = redis_async.Redis(
            host=self.settings.host,
            port=self.settings.port,
            username=username,
            password=password,
            db=self.db,
        )
        self._sha = await self._client.script_load(CAS_SCRIPT)
        self.round_trips += 1

    async def stop(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def key(self, customer_id: int) -> str:
        return f"{self.prefix}{customer_id}"

    async def write(self, batch: Sequence[CustomerFeatures]) -> int:
        """Compare-and-set every customer's hash; returns how many were set (an older or
        replayed ``as_of`` is taken but refused)."""
        try:
            return sum(await self.compare_and_set(batch))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise FeatureStoreUnavailableError(
                f"writing {len(batch)} feature hashes to Redis at {self.settings.host}:"
                f"{self.settings.port} failed ({exc}); the batch is written again"
            ) from exc

    async def compare_and_set(self, batch: Iterable[CustomerFeatures]) -> list[bool]:
        """Compare-and-set every customer's hash; True where the write was applied."""
        rows = list(batch)
        if not rows:
            return []
        client, sha = self._require()
        pipe = client.pipeline(transaction=False)
        for features in rows:
            args: list[Any] = [epoch_ms(features.as_of), features.feature_version]
            for name, value in feature_fields(features).items():
                args.extend((name, value))
            pipe.evalsha(sha, 1, self.key(features.customer_id), *args)
        try:
            results: Sequence[int] = await pipe.execute()
        except NoScriptError:
            # redis-py raises NoScriptError whose text lacks "NOSCRIPT": decide by class.
            self._sha = await client.script_load(CAS_SCRIPT)  # Redis restarted and forgot it
            self.round_trips += 1
            return await self.compare_and_set(rows)
        self.round_trips += 1
        return [bool(result) for result in results]

    async def read(self, customer_id: int) -> dict[str, str]:
        client, _ = self._require()
        raw = await client.hgetall(self.key(customer_id))
        return {_str(k): _str(v) for k, v in raw.items()}

    async def keys(self) -> list[str]:
        """Every key under this store's prefix (tests and checks compare it with gold)."""
        client, _ = self._require()
        return [_str(k) async for k in client.scan_iter(match=f"{self.prefix}*", count=1000)]

    async def delete_all(self) -> int:
        """Remove every hash under this store's prefix (tests, benchmarks); returns how many."""
        client, _ = self._require()
        keys = await self.keys()
        if keys:
            await client.delete(*keys)
        return len(keys)

    def _require(self) -> tuple[redis_async.Redis, str]:
        if self._client is None or self._sha is None:
            raise FeatureStoreNotStartedError("RedisFeatureStore used before start(); call it")
        return self._client, self._sha
