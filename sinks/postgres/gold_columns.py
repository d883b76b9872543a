"""Silver columns mapped to gold fact columns (``BV_SINK__GOLD_COLUMNS``, decision 0021).

Silver follows the source's new columns on its own (``evolve``); gold has a fixed shape of
facts, so a new silver column reaches a gold table only where the mapping says so. Once
silver holds a mapped column, ``sync_gold_columns`` gives the gold table that column with
silver's type (added, or widened where gold's is narrower) through the admin-owned
``ops.evolve_gold_column``, and returns the pairs gold now holds: the writer's type-2
statements fill those for every fact opened from then on (``GoldStatements``), in the
batch's transaction. A pair PostgreSQL refuses is left out and logged: gold then does not
carry it, rather than rounding it into a narrower column.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import asyncpg

from config.errors import ConfigurationError
from sinks.postgres.schema_drift import ColumnType, silver_column_type

log = logging.getLogger("bitvelocity.schema")

#: The columns of each gold fact table that the writer fills itself: never a mapped target.
FACT_COLUMNS = {
    "order_facts": frozenset(
        (
            "order_fact_id",
            "order_id",
            "order_date",
            "customer_id",
            "status",
            "currency",
            "total_amount",
            "total_amount_usd",
            "is_revenue_bearing",
            "is_deleted",
            "valid_from",
            "valid_to",
            "is_current",
            "source_lsn",
            "source_bronze_id",
            "lineage_id",
        )
    )
}
#: ``(silver column, gold column)`` pairs of one silver table.
ColumnPairs = tuple[tuple[str, str], ...]
_GOLD_COLUMNS = """
    SELECT column_name, data_type, numeric_precision, numeric_scale, character_maximum_length
      FROM information_schema.columns
     WHERE table_schema = 'gold' AND table_name = $1
"""


def mapped_columns(mapping: Mapping[str, str]) -> dict[str, tuple[str, ColumnPairs]]:
    """Silver table -> (gold table, its pairs), from the setting (validated there for shape
    and for the gold table each silver table feeds). A target that is one of the fact's own
    columns is refused: the writer's statements would name it twice."""
    tables: dict[str, tuple[str, ColumnPairs]] = {}
    for source, target in sorted(mapping.items()):
        table, column = source.split(".")
        gold_table, gold_column = target.split(".")
        if gold_column in FACT_COLUMNS.get(gold_table, ()):
            raise ConfigurationError(
                f"BV_SINK__GOLD_COLUMNS maps {source} to {target}, a column gold.{gold_table}"
                " fills itself; map it to a new column name"
            )
        _, pairs = tables.get(table, (gold_table, ()))
        tables[table] = (gold_table, (*pairs, (column, gold_column)))
    return tables


async def sync_gold_columns(
    connection: asyncpg.Connection,
    gold_table: str,
    pairs: ColumnPairs,
    silver: Mapping[str, ColumnType],
) -> ColumnPairs:
    """Give ``gold_table`` every mapped column ``silver`` has, with silver's type; the pairs
    gold holds afterwards (those the writer fills)."""
    rows = await connection.fetch(_GOLD_COLUMNS, gold_table)
    gold = {
        r["column_name"]: silver_column_type(
            r["data_type"],
            r["numeric_precision"],
            r["numeric_scale"],
            r["character_maximum_length"],
        ).sql()
        for r in rows
    }
    held: list[tuple[str, str]] = []
    for column, gold_column in pairs:
        kind = silver.get(column)
        if kind is None:
            continue  # not in silver (yet): the source has not sent it
        if gold.get(gold_column) != kind.sql():
            try:
                async with connection.transaction():
                    await connection.execute(
                        "SELECT ops.evolve_gold_column($1, $2, $3)",
                        gold_table,
                        gold_column,
                        kind.sql(),
                    )
            except asyncpg.PostgresError as exc:
                if isinstance(exc, asyncpg.PostgresConnectionError):
                    raise
                log.error(
                    "gold.%s.%s cannot follow silver's %s (%s): gold does not carry it",
                    gold_table,
                    gold_column,
                    kind,
                    exc,
                )
                continue
            log.warning("gold.%s.%s follows silver's %s %s", gold_table, gold_column, column, kind)
        held.append((column, gold_column))
    return tuple(held)
