"""The product-updates agent's logic through the test driver: products CDC records in,
``ProductUpdate``s and dead letters out (``derive_batch``, what the agent runs per batch),
and the cache keys each update makes the invalidation agent evict."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from agents.product_updates import derive_batch
from cache.keys import CacheKey, CacheKind
from cache.product_updates import eviction_keys
from serdes.dead_letters import ORIGIN_OFFSET, header
from tests.driver import CdcRecords, messages, product_row

T = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
PRODUCT = CacheKey(CacheKind.PRODUCT, 5)


def category(category_id: int) -> CacheKey:
    return CacheKey(CacheKind.CATEGORY, category_id)


def test_create_price_change_and_category_move_derive_updates_and_their_evictions() -> None:
    cdc = CdcRecords()
    v1 = product_row(5, 2, "19.99", updated=T)
    v2 = product_row(5, 2, "17.50", updated=T + timedelta(minutes=1), version=2, created=T)
    v3 = product_row(5, 3, "17.50", updated=T + timedelta(minutes=2), version=3, created=T)
    records = [
        cdc.change("products", "c", after=v1, lsn=100, committed=T),
        cdc.change(
            "products", "u", before=v1, after=v2, lsn=164, committed=T + timedelta(minutes=1)
        ),
        cdc.poison("products"),
        cdc.change(
            "products", "u", before=v2, after=v3, lsn=228, committed=T + timedelta(minutes=2)
        ),
    ]
    batch = derive_batch(messages(records), cdc.decoder(), time.monotonic() + 5)

    created, repriced, moved = batch.updates
    assert (created.operation, created.category_id, created.price, created.version) == (
        "CREATE",
        2,
        Decimal("19.99"),
        1,
    )
    assert created.changed_fields == (
        "category_id",
        "created_at",
        "created_by",
        "currency",
        "deleted_at",
        "deleted_by",
        "name",
        "price",
        "product_id",
        "sku",
    )
    assert (repriced.operation, repriced.changed_fields, repriced.price) == (
        "UPDATE",
        ("price",),
        Decimal("17.50"),
    )
    assert (moved.changed_fields, moved.previous_category_id, moved.category_id) == (
        ("category_id",),
        2,
        3,
    )
    assert moved.changed_at == T + timedelta(minutes=2)
    assert batch.newest == T + timedelta(minutes=2)
    (letter,) = batch.dead_letters
    assert header(letter.headers, ORIGIN_OFFSET) == "2"

    assert eviction_keys([created]) == [PRODUCT, category(2)]  # joined category 2
    assert eviction_keys([repriced]) == [PRODUCT]  # category membership unchanged
    assert eviction_keys([moved]) == [PRODUCT, category(2), category(3)]
    assert eviction_keys(batch.updates) == [PRODUCT, category(2), category(3)]


def test_a_snapshot_read_and_a_delete_evict_conservatively() -> None:
    cdc = CdcRecords()
    row = product_row(5, 4, "9.00", updated=T)
    records = [
        cdc.change("products", "r", after=row, lsn=300, committed=T),
        cdc.change("products", "d", before=row, lsn=364, committed=T + timedelta(seconds=5)),
    ]
    batch = derive_batch(messages(records), cdc.decoder(), time.monotonic() + 5)

    read, deleted = batch.updates
    assert (read.operation, read.changed_fields) == ("UPDATE", None)  # unknown: no before
    assert (deleted.operation, deleted.category_id, deleted.previous_category_id) == (
        "DELETE",
        4,
        4,
    )
    assert eviction_keys([read]) == [PRODUCT, category(4)]
    assert eviction_keys([deleted]) == [PRODUCT, category(4)]
    assert batch.dead_letters == []
