"""ProductUpdate derivation from CDC changes, its Avro form, and the keys it evicts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cache.codec import (
    Invalidation,
    decode_entry,
    decode_invalidation,
    encode_entry,
    encode_invalidation,
)
from cache.keys import CacheKey, CacheKind, KeySpace
from cache.product_updates import ProductUpdate, derive, eviction_keys, from_avro, to_avro
from records.change_events import ChangeEvent, Operation, SourcePosition
from serdes.avro import read_body, write_body
from serdes.logical_types import UNCHANGED
from serdes.own_schemas import load

AT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def row(**changes: Any) -> dict[str, Any]:
    base = {
        "product_id": 7,
        "sku": "SKU-7",
        "name": "Lamp",
        "category_id": 3,
        "price": Decimal("19.99"),
        "currency": "USD",
        "version": 4,
        "updated_at": AT,
        "deleted_at": None,
    }
    return base | changes


def change(op: Operation, before: Any, after: Any) -> ChangeEvent:
    return ChangeEvent(
        op, "public", "products", {"product_id": 7}, before, after,
        SourcePosition(1, 1, None, None), AT,
    )  # fmt: skip


def test_price_change_names_the_price_and_keeps_the_category() -> None:
    update = derive(change(Operation.UPDATE, row(), row(price=Decimal("17.50"), version=5)))
    assert update == ProductUpdate(7, "UPDATE", 3, 3, Decimal("17.50"), AT, 5, ("price",))
    assert not update.category_changed
    assert eviction_keys([update]) == [CacheKey(CacheKind.PRODUCT, 7)]


def test_category_change_evicts_the_product_and_both_categories() -> None:
    update = derive(change(Operation.UPDATE, row(), row(category_id=9, version=5)))
    assert update is not None
    assert update.category_changed
    assert update.previous_category_id == 3
    assert update.category_id == 9
    assert eviction_keys([update]) == [
        CacheKey(CacheKind.PRODUCT, 7),
        CacheKey(CacheKind.CATEGORY, 3),
        CacheKey(CacheKind.CATEGORY, 9),
    ]


def test_update_without_before_image_is_unknown_and_evicts_its_category() -> None:
    update = derive(change(Operation.UPDATE, None, row()))
    assert update is not None
    assert update.changed_fields is None
    assert eviction_keys([update]) == [
        CacheKey(CacheKind.PRODUCT, 7),
        CacheKey(CacheKind.CATEGORY, 3),
    ]


def test_delete_uses_the_before_image() -> None:
    update = derive(change(Operation.DELETE, row(), None))
    assert update is not None
    assert (update.operation, update.category_id, update.version) == ("DELETE", 3, 4)


def test_toast_unchanged_columns_are_not_changes() -> None:
    update = derive(change(Operation.UPDATE, row(), row(name=UNCHANGED, version=5)))
    assert update is not None
    assert update.changed_fields == ()


def test_truncate_derives_nothing() -> None:
    assert derive(change(Operation.TRUNCATE, None, None)) is None


def test_batch_keys_are_deduplicated_in_first_seen_order() -> None:
    a = ProductUpdate(1, "UPDATE", 3, 3, None, AT, 2, ("price",))
    b = ProductUpdate(2, "CREATE", 4, None, None, AT, 1, ("name",))
    keys = eviction_keys([a, b, a])
    assert keys == [
        CacheKey(CacheKind.PRODUCT, 1),
        CacheKey(CacheKind.PRODUCT, 2),
        CacheKey(CacheKind.CATEGORY, 4),
    ]


def test_avro_round_trip_through_the_registered_schema() -> None:
    schema = load("ProductUpdate").parsed
    update = ProductUpdate(7, "UPDATE", 9, 3, Decimal("17.50"), AT, 5, ("category_id", "price"))
    assert from_avro(read_body(write_body(schema, to_avro(update)), schema)) == update
    unknown = ProductUpdate(7, "DELETE", 3, None, None, AT, 5, None)
    assert from_avro(read_body(write_body(schema, to_avro(unknown)), schema)) == unknown


def test_entries_and_invalidations_round_trip() -> None:
    assert decode_entry(encode_entry({"price": "1.00"})) == {"price": "1.00"}
    assert decode_entry(encode_entry(None)) is None
    message = Invalidation((CacheKey(CacheKind.CATEGORY, 3),), fence="f1")
    assert decode_invalidation(encode_invalidation(message)) == message
    assert KeySpace().value(CacheKey(CacheKind.PRODUCT, 42)) == "bv:cache:product:42"
    assert KeySpace().generation(CacheKey(CacheKind.PRODUCT, 42)) == "bv:cache:gen:product:42"


def test_loaded_rows_are_json_ready_and_missing_ids_are_none() -> None:
    from cache.loaders import by_id

    rows = [{"product_id": 7, "price": Decimal("19.90"), "updated_at": AT}]
    assert by_id(rows, [7, 8]) == {
        7: {"product_id": 7, "price": "19.90", "updated_at": "2026-01-02T03:04:05.678901+00:00"},
        8: None,
    }
