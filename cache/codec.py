"""Bytes of cache entries and invalidation messages (JSON via orjson), pure.

An entry is ``{"v": <value or null>}``: null caches "no such row", so a missing id does not
reach PostgreSQL on every read; the eviction on a create removes it like any other value.
Loaders return JSON-ready values (money as decimal strings, times as ISO 8601 UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from cache.keys import CacheKey
from config.errors import PermanentError

#: A cached value: the JSON-ready row a loader returned, or None for "not found".
CacheValue = dict[str, Any] | None


class CacheEntryError(PermanentError):
    """Bytes in Redis that are not a cache entry or invalidation message of ours."""


def encode_entry(value: CacheValue) -> bytes:
    return orjson.dumps({"v": value})


def decode_entry(data: bytes) -> CacheValue:
    try:
        decoded = orjson.loads(data)
        value = decoded["v"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise CacheEntryError(f"not a cache entry: {data[:80]!r}") from exc
    if value is not None and not isinstance(value, dict):
        raise CacheEntryError(f"cache entry value is not an object: {data[:80]!r}")
    return value


@dataclass(frozen=True, slots=True)
class Invalidation:
    """One broadcast on the invalidation channel: keys evicted from L2, or a fence.

    A fence carries no keys; pub/sub keeps a publisher's order, so a subscriber that has
    seen a fence has applied every eviction published before it (tests and ``flush``).
    """

    keys: tuple[CacheKey, ...] = ()
    fence: str | None = None
    #: Every key of every kind (``bitvelocity cache flush``).
    everything: bool = False


def encode_invalidation(message: Invalidation) -> bytes:
    return orjson.dumps(
        {
            "keys": [str(k) for k in message.keys],
            "fence": message.fence,
            "all": message.everything,
        }
    )


def decode_invalidation(data: bytes) -> Invalidation:
    try:
        decoded = orjson.loads(data)
        return Invalidation(
            tuple(CacheKey.parse(k) for k in decoded.get("keys", [])),
            decoded.get("fence"),
            bool(decoded.get("all", False)),
        )
    except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
        raise CacheEntryError(f"not an invalidation message: {data[:80]!r}") from exc
