"""Schema drift between a source table's writer schema and its silver table, classified.

Pure: no database, no registry. Input is the Debezium Avro value schema (the row record of
its ``before``/``after``) and the silver columns as ``information_schema`` describes them;
output is one ``ColumnChange`` per difference and the decision a table's policy makes of it
(docs/decisions/0021). The rule that decides what is lossy: silver must hold every source
value exactly. A source type silver cannot hold is *widened* (silver must follow, or the
upsert would round or fail); a numeric whose scale shrank at the source is *narrowed* (the
source rewrote its rows rounded, and a rewrite by ALTER TABLE emits no change events, so
silver would keep values the source no longer has); a change of kind is *incompatible*.
A rename is a dropped column plus a new one: Avro has no way to say otherwise, and the
source's existing rows hold the new column's values without a change event, so a new column
arriving with a dropped one pauses the table (an operator backfills silver, then accepts).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sinks.postgres.tables import TableSpec

#: Source columns the warehouse never sinks on purpose (not drift).
UNSUNK_SOURCE_COLUMNS = frozenset({"last_correlation_id"})
#: Digits an integer type needs in a numeric column.
_INTEGER_DIGITS = {"smallint": 5, "integer": 10, "bigint": 19}
_INTEGER_RANK = {"smallint": 1, "integer": 2, "bigint": 3}
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ChangeKind(StrEnum):
    NEW_COLUMN = "new_column"
    DROPPED_COLUMN = "dropped_column"
    WIDENED = "widened"
    NARROWED = "narrowed"
    INCOMPATIBLE = "incompatible"


class Policy(StrEnum):
    EVOLVE = "evolve"
    PAUSE = "pause"
    IGNORE = "ignore"


class Decision(StrEnum):
    #: Silver follows by DDL (a new column, a widened type).
    EVOLVE = "evolve"
    #: Silver keeps its shape and no value is altered (a new column not sunk).
    IGNORE = "ignore"
    #: Silver keeps the column, new rows carry NULL there (a dropped source column).
    KEEP = "keep"
    #: The table stops until an operator accepts (``bitvelocity schema accept``).
    PAUSE = "pause"


@dataclass(frozen=True, slots=True)
class ColumnType:
    """A column's type, as far as exactness is concerned.

    ``family``: integer, numeric, string or other (compared by ``name`` only).
    ``None`` precision/length: unbounded (or, for a source string, unknown).
    """

    family: str
    name: str
    precision: int | None = None
    scale: int | None = None
    length: int | None = None

    def sql(self) -> str:
        if self.family == "numeric":
            if self.precision is None:
                return "numeric"
            return f"numeric({self.precision}, {self.scale or 0})"
        if self.family == "string":
            return "text" if self.length is None else f"varchar({self.length})"
        return self.name

    def __str__(self) -> str:
        return self.sql()


@dataclass(frozen=True, slots=True)
class ColumnChange:
    """One difference between source and silver, with the type silver would need."""

    column: str  # the silver name
    kind: ChangeKind
    source: ColumnType | None
    silver: ColumnType | None
    #: The silver type after an evolution (None: nothing to alter).
    target: ColumnType | None = None
    #: For a new column: the columns dropped by the same schema (maybe it is one renamed).
    dropped_with: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind is ChangeKind.NEW_COLUMN and self.dropped_with:
            return (
                f"new column {self.column} {self.source} as {', '.join(self.dropped_with)} "
                "dropped (a rename? the source's existing rows hold values silver is not sent)"
            )
        if self.kind is ChangeKind.NEW_COLUMN:
            return f"new column {self.column} {self.source}"
        if self.kind is ChangeKind.DROPPED_COLUMN:
            return f"dropped column {self.column} (silver {self.silver})"
        return f"{self.kind.value} {self.column}: source {self.source}, silver {self.silver}"


# -- the source side: a Debezium Avro row record -----------------------------------------------
_OTHER_BY_CONNECT_NAME = {
    "io.debezium.time.Date": "date",
    "io.debezium.time.Time": "time",
    "io.debezium.time.MicroTime": "time",
    "io.debezium.time.Timestamp": "timestamp",
    "io.debezium.time.MicroTimestamp": "timestamp",
    "io.debezium.time.NanoTimestamp": "timestamp",
    "io.debezium.time.ZonedTimestamp": "timestamptz",
    "io.debezium.time.ZonedTime": "timetz",
    "io.debezium.time.MicroDuration": "interval",
    "io.debezium.data.Uuid": "uuid",
    "io.debezium.data.Json": "json",
    "io.debezium.data.Xml": "xml",
}
_OTHER_BY_AVRO = {"boolean": "boolean", "double": "double", "float": "real", "bytes": "bytea"}


def envelope_row_schema(envelope: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The row record of a Debezium envelope schema (None for a message-only envelope)."""
    for field in envelope.get("fields", ()):
        if field.get("name") == "before":
            kind = field["type"]
            if isinstance(kind, list):
                kind = next((t for t in kind if t != "null"), None)
            return kind if isinstance(kind, Mapping) else None
    return None


def source_columns(row: Mapping[str, Any]) -> dict[str, ColumnType]:
    """Each field of a Debezium Avro row record -> its ``ColumnType``."""
    return {field["name"]: avro_column_type(field["type"]) for field in row.get("fields", ())}


def avro_column_type(avro: Any) -> ColumnType:
    if isinstance(avro, list):
        avro = next((t for t in avro if t != "null"), "null")
    if isinstance(avro, str):
        avro = {"type": avro}
    base = avro.get("type")
    if isinstance(base, Mapping | list):  # a nested type definition
        return avro_column_type(base)
    connect_name = avro.get("connect.name")
    parameters = avro.get("connect.parameters") or {}
    if connect_name in _OTHER_BY_CONNECT_NAME:
        return ColumnType("other", _OTHER_BY_CONNECT_NAME[connect_name])
    if (
        avro.get("logicalType") == "decimal"
        or connect_name == "org.apache.kafka.connect.data.Decimal"
    ):
        precision = avro.get("precision") or parameters.get("connect.decimal.precision")
        scale = avro.get("scale", parameters.get("scale", 0))
        return ColumnType("numeric", "numeric", int(precision) if precision else None, int(scale))
    if connect_name == "io.debezium.data.VariableScaleDecimal":
        return ColumnType("numeric", "numeric")
    if base == "int":
        small = avro.get("connect.type") in {"int16", "int8"}
        return ColumnType("integer", "smallint" if small else "integer")
    if base == "long":
        return ColumnType("integer", "bigint")
    if base == "string":
        length = parameters.get("__debezium.source.column.length")
        return ColumnType("string", "string", length=int(length) if length else None)
    if base == "record" and connect_name:
        return ColumnType("other", str(connect_name))
    return ColumnType("other", _OTHER_BY_AVRO.get(str(base), str(base)))


# -- the silver side: information_schema.columns -----------------------------------------------
_OTHER_BY_DATA_TYPE = {
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "time without time zone": "time",
    "time with time zone": "timetz",
    "jsonb": "json",
    "double precision": "double",
}


def silver_column_type(
    data_type: str,
    numeric_precision: int | None = None,
    numeric_scale: int | None = None,
    character_maximum_length: int | None = None,
) -> ColumnType:
    """A silver column's ``ColumnType`` from its ``information_schema.columns`` row."""
    if data_type in _INTEGER_RANK:
        return ColumnType("integer", data_type)
    if data_type == "numeric":
        return ColumnType("numeric", "numeric", numeric_precision, numeric_scale)
    if data_type in {"text", "character varying", "character"}:
        return ColumnType("string", data_type, length=character_maximum_length)
    return ColumnType("other", _OTHER_BY_DATA_TYPE.get(data_type, data_type))


# -- the comparison ---------------------------------------------------------------------------
def detect_drift(
    spec: TableSpec,
    source: Mapping[str, ColumnType],
    silver: Mapping[str, ColumnType],
) -> list[ColumnChange]:
    """Every difference between ``source`` (source names) and ``silver``'s data columns.

    ``silver`` holds the silver table's data columns only (the TableSpec's and any a past
    evolution added), never its bookkeeping columns. Ordered: silver order, then new ones.
    """
    by_silver_name = {spec.renames.get(name, name): kind for name, kind in source.items()}
    changes: list[ColumnChange] = []
    for column, stored in silver.items():
        incoming = by_silver_name.get(column)
        if incoming is None:
            changes.append(ColumnChange(column, ChangeKind.DROPPED_COLUMN, None, stored))
            continue
        change = compare_types(column, incoming, stored)
        if change is not None:
            changes.append(change)
    dropped = tuple(c.column for c in changes if c.kind is ChangeKind.DROPPED_COLUMN)
    for column, incoming in by_silver_name.items():
        if column not in silver and column not in UNSUNK_SOURCE_COLUMNS:
            changes.append(
                ColumnChange(
                    column, ChangeKind.NEW_COLUMN, incoming, None, incoming, dropped_with=dropped
                )
            )
    return changes


def compare_types(column: str, source: ColumnType, silver: ColumnType) -> ColumnChange | None:
    """How one column's source type relates to silver's; None when silver holds it exactly."""

    def change(kind: ChangeKind, target: ColumnType | None = None) -> ColumnChange:
        return ColumnChange(column, kind, source, silver, target)

    pair = (source.family, silver.family)
    if pair == ("integer", "integer"):
        if _INTEGER_RANK[source.name] > _INTEGER_RANK[silver.name]:
            return change(ChangeKind.WIDENED, source)
        return None
    if pair == ("integer", "numeric"):
        if silver.precision is None:
            return None
        digits, scale = _INTEGER_DIGITS[source.name], silver.scale or 0
        if silver.precision - scale >= digits:
            return None
        return change(ChangeKind.WIDENED, ColumnType("numeric", "numeric", digits + scale, scale))
    if pair == ("numeric", "numeric"):
        return _compare_numeric(source, silver, change)
    if pair == ("string", "string"):
        if silver.length is None or source.length is None:
            # Silver unbounded holds anything; an unknown source length (Debezium does not
            # put it in the schema unless told to) is not guessed at.
            return None
        if source.length > silver.length:
            return change(ChangeKind.WIDENED, ColumnType("string", "string", length=source.length))
        return None
    if source.family == silver.family == "other" and source.name == silver.name:
        return None
    return change(ChangeKind.INCOMPATIBLE)


def _compare_numeric(
    source: ColumnType, silver: ColumnType, change: Callable[..., ColumnChange]
) -> ColumnChange | None:
    if silver.precision is None:
        return None  # unconstrained numeric holds every numeric exactly
    if source.precision is None:
        return change(ChangeKind.WIDENED, source)
    source_scale, silver_scale = source.scale or 0, silver.scale or 0
    if source_scale < silver_scale:
        return change(ChangeKind.NARROWED)
    integer_digits = max(source.precision - source_scale, silver.precision - silver_scale)
    scale = max(source_scale, silver_scale)
    if integer_digits + scale == silver.precision and scale == silver_scale:
        return None
    return change(
        ChangeKind.WIDENED, ColumnType("numeric", "numeric", integer_digits + scale, scale)
    )


# -- the decision -----------------------------------------------------------------------------
def decide(policy: Policy, change: ColumnChange) -> Decision:
    """What ``policy`` makes of ``change``: nothing lossy is ever automatic."""
    kind = change.kind
    if policy is Policy.PAUSE or kind in {ChangeKind.NARROWED, ChangeKind.INCOMPATIBLE}:
        return Decision.PAUSE
    if kind is ChangeKind.DROPPED_COLUMN:
        return Decision.KEEP
    if kind is ChangeKind.NEW_COLUMN and change.dropped_with:
        # A rename is a drop plus an add to Avro: the source's rows already hold the new
        # column's values (ALTER emits no events), so silver's would stay NULL. Backfilling
        # silver (from the kept column) is an operator's call.
        return Decision.PAUSE
    if not _IDENTIFIER.match(change.column):
        return Decision.PAUSE  # a name we would have to quote: an operator's call
    if kind is ChangeKind.NEW_COLUMN:
        return Decision.EVOLVE if policy is Policy.EVOLVE else Decision.IGNORE
    # Widened: ignoring it would round or truncate values, so only evolve may pass it.
    return Decision.EVOLVE if policy is Policy.EVOLVE else Decision.PAUSE


def table_decision(decisions: Iterable[Decision]) -> Decision | None:
    """The table's fate: paused if any change pauses it; None when nothing changed."""
    seen = set(decisions)
    if not seen:
        return None
    if Decision.PAUSE in seen:
        return Decision.PAUSE
    return Decision.EVOLVE if Decision.EVOLVE in seen else next(iter(sorted(seen)))


def evolve_ddl(spec: TableSpec, change: ColumnChange) -> str:
    """The DDL that makes silver follow an EVOLVE decision (identifier checked by ``decide``)."""
    if change.target is None or not _IDENTIFIER.match(change.column):
        raise ValueError(f"{change.describe()} is not an evolution")
    if change.kind is ChangeKind.NEW_COLUMN:
        return (
            f"ALTER TABLE {spec.silver_table} ADD COLUMN IF NOT EXISTS "
            f"{change.column} {change.target.sql()}"
        )
    return (
        f"ALTER TABLE {spec.silver_table} ALTER COLUMN {change.column} TYPE {change.target.sql()}"
    )
