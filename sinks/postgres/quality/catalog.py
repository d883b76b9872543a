"""The allow-list of silver tables and columns: the only identifiers quality SQL may name.

Rules are data written by people; before a rule's table, column or reference target is
put into a statement it must be a column of a silver table as PostgreSQL itself reports
it, and the type it is compared as must be one of a few known casts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from uuid import UUID

import asyncpg

from quality.rules import InvalidRuleError, Rule, RuleType

SCHEMA = "silver"

#: Column types a key or reference value may be cast to, by ``format_type`` without typmod.
_CASTS = MappingProxyType(
    {
        "bigint": "bigint",
        "integer": "integer",
        "smallint": "smallint",
        "numeric": "numeric",
        "text": "text",
        "character varying": "text",
        "date": "date",
        "uuid": "uuid",
    }
)
_INTEGER_RANGES = MappingProxyType(
    {"bigint": 2**63, "integer": 2**31, "smallint": 2**15},
)
_INTEGER = re.compile(r"-?[0-9]+")

_CATALOG_SQL = """
SELECT c.relname AS table_name, a.attname AS column_name,
       format_type(a.atttypid, a.atttypmod) AS data_type
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""


class UnknownColumnError(InvalidRuleError):
    """A rule names a table or column that silver does not have."""


@dataclass(frozen=True, slots=True)
class SilverCatalog:
    """Silver tables (partitions excluded) -> column -> type as ``format_type`` shows it."""

    tables: Mapping[str, Mapping[str, str]]

    def column_type(self, table: str, column: str) -> str:
        columns = self.tables.get(table)
        if columns is None:
            known = ", ".join(sorted(self.tables)) or "none (is the warehouse migrated?)"
            raise UnknownColumnError(f"silver has no table {table!r}; tables: {known}")
        if column not in columns:
            raise UnknownColumnError(
                f"silver.{table} has no column {column!r}; columns: {', '.join(columns)}"
            )
        return columns[column]

    def cast_of(self, table: str, column: str) -> str:
        """The SQL type a parameter is cast to when compared with ``silver.table.column``."""
        data_type = self.column_type(table, column)
        cast = _CASTS.get(data_type.split("(", 1)[0])
        if cast is None:
            raise UnknownColumnError(
                f"silver.{table}.{column} is {data_type}; keys and references must be one of "
                f"{', '.join(sorted(set(_CASTS)))}"
            )
        return cast

    def check_rule(self, rule: Rule) -> None:
        """Raise ``UnknownColumnError`` unless every identifier of ``rule`` is in silver."""
        where = rule.description
        try:
            self.column_type(rule.table_name, rule.column_name)
            if rule.rule_type is RuleType.REFERENCE:
                ref_table, ref_column = rule.reference
                self.cast_of(ref_table, ref_column)
                self.column_type(ref_table, "hard_deleted")
        except UnknownColumnError as exc:
            raise UnknownColumnError(f"{where}: {exc}") from None


async def load_silver_catalog(connection: asyncpg.Connection) -> SilverCatalog:
    """Read the silver tables and columns from ``pg_catalog`` (parents only, not partitions)."""
    tables: dict[str, dict[str, str]] = {}
    for record in await connection.fetch(_CATALOG_SQL, SCHEMA):
        tables.setdefault(record["table_name"], {})[record["column_name"]] = record["data_type"]
    return SilverCatalog(
        MappingProxyType({name: MappingProxyType(cols) for name, cols in tables.items()})
    )


def castable(cast: str, text: str) -> bool:
    """Whether PostgreSQL will accept ``text::cast``: a bad value must be "not found", never
    an error that aborts the caller's transaction."""
    if cast in _INTEGER_RANGES:
        limit = _INTEGER_RANGES[cast]
        return bool(_INTEGER.fullmatch(text)) and -limit <= int(text) < limit
    if cast == "numeric":
        try:
            return Decimal(text).is_finite()
        except InvalidOperation:
            return False
    if cast == "date":
        try:
            date.fromisoformat(text)
        except ValueError:
            return False
        return True
    if cast == "uuid":
        try:
            UUID(text)
        except ValueError:
            return False
        return True
    return "\x00" not in text
