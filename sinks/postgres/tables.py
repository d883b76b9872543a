"""Which OLTP table lands in which bronze and silver table, with which key and columns.

Silver keeps the source's column names except where a partition key is renamed
(``orders.created_date`` is ``silver.orders.order_date``, DESIGN.md section 6).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

_AUDIT = (
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
    "version",
    "deleted_at",
    "deleted_by",
)


@dataclass(frozen=True)
class TableSpec:
    """The mapping of one captured table."""

    name: str
    key: tuple[str, ...]  # silver names
    columns: tuple[str, ...]  # silver names, key first, audit columns last
    renames: Mapping[str, str] = field(default_factory=dict)  # source name -> silver name
    _source_pairs: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)

    @property
    def bronze_table(self) -> str:
        return f"bronze.{self.name}"

    @property
    def silver_table(self) -> str:
        return f"silver.{self.name}"

    def __post_init__(self) -> None:
        # Resolved once: silver_row runs for every record of every batch.
        pairs = tuple((column, self.source_name(column)) for column in self.columns)
        object.__setattr__(self, "_source_pairs", pairs)

    def source_name(self, silver_column: str) -> str:
        for source, silver in self.renames.items():
            if silver == silver_column:
                return source
        return silver_column

    def silver_row(self, source_row: Mapping[str, object]) -> dict[str, object]:
        """The silver columns of a decoded source row (missing columns are None)."""
        get = source_row.get
        return {column: get(source) for column, source in self._source_pairs}

    def key_of(self, silver_row: Mapping[str, object]) -> tuple[object, ...]:
        return tuple(silver_row[column] for column in self.key)


def _spec(name: str, key: tuple[str, ...], data: tuple[str, ...], **renames: str) -> TableSpec:
    return TableSpec(name, key, key + data + _AUDIT, renames)


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        _spec("categories", ("category_id",), ("name", "parent_category_id")),
        _spec("customers", ("customer_id",), ("email", "first_name", "last_name", "country")),
        _spec(
            "products",
            ("product_id",),
            ("sku", "name", "category_id", "price", "currency"),
        ),
        _spec(
            "orders",
            ("order_id", "order_date"),
            ("customer_id", "status", "currency", "total_amount"),
            created_date="order_date",
        ),
        _spec(
            "order_items",
            ("order_item_id",),
            ("order_id", "order_created_date", "product_id", "quantity", "unit_price"),
        ),
        _spec(
            "payments",
            ("payment_id",),
            ("order_id", "order_created_date", "amount", "currency", "method", "status"),
        ),
    )
}
