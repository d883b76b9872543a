"""The cache-invalidation agent's logic through the test driver: ``product-updates``
records in (as the product-updates agent frames them), the keys to evict and dead letters
out (``decode_updates`` then ``eviction_keys``, what the agent runs per batch)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from agents.cache_invalidation import decode_updates
from cache.keys import CacheKey, CacheKind
from cache.product_updates import ProductUpdate, eviction_keys, to_avro
from serdes.dead_letters import ERROR_CLASS, ORIGIN_OFFSET, header
from serdes.own_schemas import load
from tests.driver import CdcRecords, FakeClock, InputTopic, messages, poison_unknown_schema

T = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def update(
    product_id: int,
    operation: str,
    category: int,
    previous: int | None,
    changed: tuple[str, ...] | None,
) -> ProductUpdate:
    return ProductUpdate(product_id, operation, category, previous, Decimal("3.50"), T, 2, changed)


def test_a_batch_of_updates_evicts_each_product_and_the_categories_whose_membership_moved() -> None:
    cdc = CdcRecords()
    codec = cdc.codec()
    schema_id = cdc.register(load("ProductUpdate").text)
    topic = InputTopic("product-updates", FakeClock())
    updates = [
        update(1, "UPDATE", 10, 10, ("name", "price")),  # product only
        update(2, "UPDATE", 11, 10, ("category_id",)),  # left 10, joined 11
        update(1, "UPDATE", 10, 10, ("deleted_at",)),  # soft delete: category 10 again
        update(3, "CREATE", 12, None, ("category_id", "name")),
    ]

    def framed(u: ProductUpdate) -> bytes:
        return codec.encode(schema_id, to_avro(u))

    records = [
        topic.record(updates[0].key(), framed(updates[0])),
        topic.record(updates[1].key(), framed(updates[1])),
        topic.record(b"9", b"not avro"),  # offset 2
        topic.record(b"9", None),  # a tombstone: nothing to evict, no dead letter
        topic.record(updates[2].key(), framed(updates[2])),
        topic.record(updates[3].key(), framed(updates[3])),
        topic.record(b"8", poison_unknown_schema()),  # offset 6
    ]

    decoded, letters = decode_updates(messages(records), codec)

    assert decoded == updates  # the Avro round trip keeps every field
    assert eviction_keys(decoded) == [
        CacheKey(CacheKind.PRODUCT, 1),
        CacheKey(CacheKind.PRODUCT, 2),
        CacheKey(CacheKind.CATEGORY, 10),
        CacheKey(CacheKind.CATEGORY, 11),
        CacheKey(CacheKind.PRODUCT, 3),
        CacheKey(CacheKind.CATEGORY, 12),
    ]
    assert [header(letter.headers, ORIGIN_OFFSET) for letter in letters] == ["2", "6"]
    assert all(letter.topic == "product-updates.dlq" for letter in letters)
    assert all(header(letter.headers, ERROR_CLASS) for letter in letters)
    assert letters[0].value == b"not avro"
