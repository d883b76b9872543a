"""Which OLTP table lands in which bronze and silver table, with which key and columns.

Silver keeps the source's column names except where a partition key is renamed
(``orders.created_date`` is ``silver.orders.order_date``, DESIGN.md section 6).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter
from typing import cast

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
    _values: Callable[[Mapping[str, object]], tuple[object, ...]] = field(
        init=False, repr=False, compare=False
    )
    _key: Callable[[Mapping[str, object]], tuple[object, ...]] = field(
        init=False, repr=False, compare=False
    )

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
        object.__setattr__(self, "_values", _tuple_getter(self.columns))
        object.__setattr__(self, "_key", _tuple_getter(self.key))

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
        return self._key(silver_row)

    def values_of(self, silver_row: Mapping[str, object]) -> tuple[object, ...]:
        """The row's values in ``columns`` order (a missing column raises ``KeyError``)."""
        return self._values(silver_row)


def _one_value(column: str, row: Mapping[str, object]) -> tuple[object, ...]:
    return (row[column],)


def _tuple_getter(columns: tuple[str, ...]) -> Callable[[Mapping[str, object]], tuple[object, ...]]:
    """The values of ``columns`` as a tuple, by ``operator.itemgetter`` (one C call per row;
    it returns a bare value for a single column, hence the wrapper)."""
    if len(columns) == 1:
        return partial(_one_value, columns[0])  # picklable, unlike a lambda
    return cast(Callable[[Mapping[str, object]], tuple[object, ...]], itemgetter(*columns))


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
