"""Order, order item, product and category rows as the analytics core sees them.

Plain frozen records built from decoded Debezium changes (``serdes.debezium.ChangeEvent``):
pure conversion, no I/O. Amounts are ``Decimal``, instants aware UTC. A row whose
required column is missing raises ``AnalyticsInputError`` (a permanent error: dead-letter).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from config.errors import PermanentError

CENT = Decimal("0.01")
REVENUE_STATUSES = frozenset({"CONFIRMED", "SHIPPED", "DELIVERED"})


class AnalyticsInputError(PermanentError):
    """A change lacks a column the analytics need (e.g. ``created_at``)."""


def to_cents(amount: Decimal) -> Decimal:
    """Round half away from zero to cents, as PostgreSQL's ``round(numeric, 2)`` does."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class OrderRow:
    order_id: int
    customer_id: int
    status: str
    currency: str
    total_amount: Decimal
    created_at: datetime
    deleted: bool = False
    #: Source LSN of the change this row came from: a TRUNCATE withdraws the rows below its
    #: own (docs/decisions/0021). None in rows stored before it was recorded: withdrawn.
    lsn: int | None = None

    @property
    def revenue_bearing(self) -> bool:
        """DESIGN.md section 8: CONFIRMED, SHIPPED or DELIVERED, and not deleted."""
        return self.status in REVENUE_STATUSES and not self.deleted


@dataclass(frozen=True, slots=True)
class ItemRow:
    item_id: int
    order_id: int
    product_id: int
    quantity: int
    unit_price: Decimal
    deleted: bool = False
    #: Source LSN of the change this row came from: an older change replayed is ignored.
    lsn: int | None = None


@dataclass(frozen=True, slots=True)
class ProductRow:
    product_id: int
    category_id: int | None
    deleted: bool = False
    #: Source LSN of the change this row came from: an older change replayed is ignored.
    lsn: int | None = None


def _get(row: Mapping[str, Any], column: str, what: str) -> Any:
    value = row.get(column)
    if value is None:
        raise AnalyticsInputError(f"{what} change without {column}: {dict(row)!r}")
    return value


def _instant(value: Any, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise AnalyticsInputError(f"{what}: created_at must be an aware datetime, got {value!r}")
    return value.astimezone(UTC)


def order_from_row(row: Mapping[str, Any], lsn: int | None = None) -> OrderRow:
    return OrderRow(
        order_id=int(_get(row, "order_id", "orders")),
        customer_id=int(_get(row, "customer_id", "orders")),
        status=str(_get(row, "status", "orders")),
        currency=str(_get(row, "currency", "orders")).strip(),
        total_amount=Decimal(_get(row, "total_amount", "orders")),
        created_at=_instant(_get(row, "created_at", "orders"), "orders"),
        deleted=row.get("deleted_at") is not None,
        lsn=lsn,
    )


def item_from_row(row: Mapping[str, Any], lsn: int | None = None) -> ItemRow:
    return ItemRow(
        item_id=int(_get(row, "order_item_id", "order_items")),
        order_id=int(_get(row, "order_id", "order_items")),
        product_id=int(_get(row, "product_id", "order_items")),
        quantity=int(_get(row, "quantity", "order_items")),
        unit_price=Decimal(_get(row, "unit_price", "order_items")),
        deleted=row.get("deleted_at") is not None,
        lsn=lsn,
    )


def product_from_row(row: Mapping[str, Any], lsn: int | None = None) -> ProductRow:
    category = row.get("category_id")
    return ProductRow(
        product_id=int(_get(row, "product_id", "products")),
        category_id=None if category is None else int(category),
        deleted=row.get("deleted_at") is not None,
        lsn=lsn,
    )
