"""Product changes -> ``ProductUpdate`` events -> the cache keys they invalidate, pure.

``derive`` turns a decoded CDC change of ``public.products`` into the Avro
``ProductUpdate`` of DESIGN.md section 4 (key: product id). ``public.products`` has
REPLICA IDENTITY FULL (oltp migration 0003), so an update carries its before image:
``previousCategoryId`` and ``changedFields`` are exact. Without one (a snapshot read, or a
change from before that migration) both are null, "unknown", and the invalidation is
conservative.

``eviction_keys``: the product always; its category when the category's profile can have
changed (the product joined or left it: create, delete, soft delete, category change, or
unknown); on a category change both the old and the new one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from cache.keys import CacheKey, CacheKind
from records.change_events import ChangeEvent, Operation
from serdes.logical_types import UNCHANGED

#: Audit columns the trigger moves on every update: not a change of the product itself.
_AUDIT = frozenset({"updated_at", "updated_by", "version"})


@dataclass(frozen=True, slots=True)
class ProductUpdate:
    product_id: int
    operation: str  # CREATE | UPDATE | DELETE
    category_id: int | None
    previous_category_id: int | None
    price: Decimal | None
    changed_at: datetime
    version: int
    #: None: unknown (no before image).
    changed_fields: tuple[str, ...] | None

    @property
    def category_changed(self) -> bool:
        return self.operation == "UPDATE" and "category_id" in (self.changed_fields or ())

    def key(self) -> bytes:
        return str(self.product_id).encode()


def changed_columns(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[str, ...]:
    """Columns whose value differs (TOAST-unchanged columns did not change), sorted."""
    return tuple(
        sorted(
            column
            for column, value in after.items()
            if value is not UNCHANGED and column not in _AUDIT and before.get(column) != value
        )
    )


def derive(event: ChangeEvent) -> ProductUpdate | None:
    """The ``ProductUpdate`` of one products change; None for what changes no product."""
    if event.op in (Operation.TRUNCATE, Operation.MESSAGE):
        return None
    before, after = event.before, event.after
    row = after if after is not None else before
    if row is None:
        return None
    if event.op is Operation.CREATE:
        operation, changed = "CREATE", tuple(sorted(c for c in row if c not in _AUDIT))
    elif event.op is Operation.DELETE:
        operation, changed = "DELETE", None
    elif before is not None and after is not None and event.op is Operation.UPDATE:
        operation, changed = "UPDATE", changed_columns(before, after)
    else:  # an update without before image, or a snapshot read
        operation, changed = "UPDATE", None
    price = row.get("price")
    return ProductUpdate(
        product_id=int(row["product_id"]),
        operation=operation,
        category_id=_optional_int(after.get("category_id") if after else row.get("category_id")),
        previous_category_id=_optional_int(before.get("category_id")) if before else None,
        price=price if isinstance(price, Decimal) else None,
        changed_at=event.committed_at,
        version=int(row.get("version") or 0),
        changed_fields=changed,
    )


def _optional_int(value: Any) -> int | None:
    return None if value is None or value is UNCHANGED else int(value)


def to_avro(update: ProductUpdate) -> dict[str, Any]:
    return {
        "productId": update.product_id,
        "operation": update.operation,
        "categoryId": update.category_id,
        "previousCategoryId": update.previous_category_id,
        "price": update.price,
        "changedAt": update.changed_at,
        "version": update.version,
        "changedFields": list(update.changed_fields) if update.changed_fields is not None else None,
    }


def from_avro(record: Mapping[str, Any]) -> ProductUpdate:
    changed = record.get("changedFields")
    return ProductUpdate(
        product_id=int(record["productId"]),
        operation=str(record["operation"]),
        category_id=record.get("categoryId"),
        previous_category_id=record.get("previousCategoryId"),
        price=record.get("price"),
        changed_at=record["changedAt"],
        version=int(record["version"]),
        changed_fields=tuple(changed) if changed is not None else None,
    )


def _membership_changed(update: ProductUpdate) -> bool:
    if update.operation in ("CREATE", "DELETE") or update.changed_fields is None:
        return True
    return bool({"category_id", "deleted_at"} & set(update.changed_fields))


def eviction_keys(updates: Iterable[ProductUpdate]) -> list[CacheKey]:
    """Every key a batch of updates invalidates, each once, in first-seen order."""
    keys: dict[CacheKey, None] = {}
    for update in updates:
        keys[CacheKey(CacheKind.PRODUCT, update.product_id)] = None
        if not _membership_changed(update):
            continue
        for category in (update.previous_category_id, update.category_id):
            if category is not None:
                keys[CacheKey(CacheKind.CATEGORY, category)] = None
    return list(keys)
