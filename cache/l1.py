"""L1: a bounded in-process TTL cache whose fills lose to invalidations, pure.

A fill first takes a ``ticket`` (the local invalidation sequence), reads L2 or PostgreSQL,
then ``put``s with it: an invalidation of that key (or of everything) since the ticket
makes the ``put`` a no-op, so an eviction broadcast racing a fill always wins. Entries
carry the L2 generation they were read under, and expire after a short TTL as the net
under a lost pub/sub message.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cache.codec import CacheValue
from cache.keys import CacheKey

Clock = Callable[[], float]
_MISSING = object()


@dataclass(frozen=True, slots=True)
class L1Entry:
    value: CacheValue
    generation: str | None
    expires_at: float


class LocalCache:
    """In-process TTL + LRU cache with invalidation-guarded fills (one event loop)."""

    def __init__(
        self,
        ttl_s: float,
        max_entries: int,
        *,
        clock: Clock = time.monotonic,
        guard: bool = True,
    ) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._guard = guard
        self._entries: OrderedDict[CacheKey, L1Entry] = OrderedDict()
        self._sequence = 0
        #: key -> sequence of its latest invalidation, for keys invalidated recently.
        self._invalidated: dict[CacheKey, int] = {}
        #: Every ticket below this is refused (set when the map above is pruned or
        #: everything is invalidated: conservative, a refused fill only costs a miss).
        self._floor = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> L1Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def ticket(self) -> int:
        """Take before reading the value to ``put``; pass it to ``put``."""
        return self._sequence

    def put(self, key: CacheKey, value: CacheValue, generation: str | None, ticket: int) -> bool:
        """Store unless ``key`` was invalidated since ``ticket``; True when stored."""
        if self._guard and (ticket < self._floor or self._invalidated.get(key, -1) > ticket):
            return False
        self._entries[key] = L1Entry(value, generation, self._clock() + self._ttl_s)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return True

    def invalidate(self, keys: Iterable[CacheKey]) -> int:
        """Drop ``keys`` and refuse fills that began before now; returns entries dropped."""
        self._sequence += 1
        dropped = 0
        for key in keys:
            self._invalidated[key] = self._sequence
            if self._entries.pop(key, None) is not None:
                dropped += 1
        if len(self._invalidated) > 4 * self._max_entries:
            self._invalidated.clear()
            self._sequence += 1
            self._floor = self._sequence
        return dropped

    def invalidate_all(self) -> int:
        """Drop everything (a flush, or the invalidation channel was lost for a while)."""
        dropped = len(self._entries)
        self._entries.clear()
        self._invalidated.clear()
        self._sequence += 1
        self._floor = self._sequence
        return dropped
