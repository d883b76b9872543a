"""L1: TTL, size bound, and fills that lose to invalidations (expected values by hand)."""

from __future__ import annotations

from cache.keys import CacheKey, CacheKind
from cache.l1 import LocalCache

P1 = CacheKey(CacheKind.PRODUCT, 1)
P2 = CacheKey(CacheKind.PRODUCT, 2)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entry_expires_after_its_ttl() -> None:
    clock = FakeClock()
    cache = LocalCache(5.0, 10, clock=clock)
    assert cache.put(P1, {"price": "1.00"}, "g1", cache.ticket())
    clock.now += 4.9
    entry = cache.get(P1)
    assert entry is not None
    assert entry.value == {"price": "1.00"}
    assert entry.generation == "g1"
    clock.now += 0.2
    assert cache.get(P1) is None


def test_least_recently_used_entry_goes_first_when_full() -> None:
    cache = LocalCache(60.0, 2, clock=FakeClock())
    p3 = CacheKey(CacheKind.PRODUCT, 3)
    for key in (P1, P2):
        cache.put(key, {}, None, cache.ticket())
    assert cache.get(P1) is not None  # P2 is now the least recently used
    cache.put(p3, {}, None, cache.ticket())
    assert cache.get(P2) is None
    assert cache.get(P1) is not None
    assert cache.get(p3) is not None


def test_fill_that_began_before_an_invalidation_is_refused() -> None:
    cache = LocalCache(60.0, 10, clock=FakeClock())
    ticket = cache.ticket()
    cache.invalidate([P1])
    assert not cache.put(P1, {"price": "old"}, None, ticket)
    assert cache.get(P1) is None
    # another key is not affected, and a fill that begins afterwards is kept
    assert cache.put(P2, {}, None, ticket)
    assert cache.put(P1, {"price": "new"}, None, cache.ticket())


def test_invalidate_drops_present_entries() -> None:
    cache = LocalCache(60.0, 10, clock=FakeClock())
    cache.put(P1, {}, None, cache.ticket())
    assert cache.invalidate([P1, P2]) == 1
    assert len(cache) == 0


def test_invalidate_all_refuses_every_fill_in_flight() -> None:
    cache = LocalCache(60.0, 10, clock=FakeClock())
    ticket = cache.ticket()
    cache.put(P1, {}, None, ticket)
    assert cache.invalidate_all() == 1
    assert not cache.put(P2, {}, None, ticket)
    assert cache.put(P2, {}, None, cache.ticket())


def test_pruned_invalidation_memory_stays_conservative() -> None:
    cache = LocalCache(60.0, 1, clock=FakeClock())
    ticket = cache.ticket()
    for i in range(10):  # beyond 4 x max_entries: the per-key memory is pruned
        cache.invalidate([CacheKey(CacheKind.PRODUCT, 100 + i)])
    assert not cache.put(P1, {}, None, ticket)
    assert cache.put(P1, {}, None, cache.ticket())


def test_without_guard_a_racing_fill_is_kept() -> None:
    cache = LocalCache(60.0, 10, clock=FakeClock(), guard=False)
    ticket = cache.ticket()
    cache.invalidate([P1])
    assert cache.put(P1, {"price": "old"}, None, ticket)
