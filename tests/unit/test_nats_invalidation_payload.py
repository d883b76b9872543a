"""The cache.invalidate payload: evicted keys and the product-updates offsets they came from."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from cache.keys import CacheKey, CacheKind
from cache.nats_invalidation import SourceRange, eviction_message, source_ranges


def test_source_ranges_cover_each_partition_once() -> None:
    positions = [("pu", 1, 7), ("pu", 0, 3), ("pu", 1, 5), ("pu", 0, 4), ("pu", 1, 6)]
    assert source_ranges(positions) == [SourceRange("pu", 0, 3, 4), SourceRange("pu", 1, 5, 7)]
    assert source_ranges([]) == []


def test_payload_names_keys_source_and_times() -> None:
    changed = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    evicted = datetime(2026, 11, 26, 12, 0, 1, tzinfo=UTC)
    keys = [CacheKey(CacheKind.PRODUCT, 42), CacheKey(CacheKind.CATEGORY, 7)]
    payload = orjson.loads(
        eviction_message(keys, [SourceRange("product-updates", 0, 10, 12)], changed, evicted)
    )
    assert payload == {
        "keys": ["product:42", "category:7"],
        "source": [
            {"topic": "product-updates", "partition": 0, "first_offset": 10, "last_offset": 12}
        ],
        "changed_at": "2026-11-26T12:00:00+00:00",
        "evicted_at": "2026-11-26T12:00:01+00:00",
    }
