"""Schema drift between a Debezium writer schema and silver, classified and decided."""

from __future__ import annotations

from typing import Any

import pytest

from sinks.postgres.schema_drift import (
    ChangeKind,
    ColumnType,
    Decision,
    Policy,
    avro_column_type,
    decide,
    detect_drift,
    envelope_row_schema,
    evolve_ddl,
    silver_column_type,
    source_columns,
)
from sinks.postgres.tables import TABLES

ITEMS = TABLES["order_items"]


def decimal(precision: int, scale: int) -> dict[str, Any]:
    return {
        "type": "bytes",
        "logicalType": "decimal",
        "precision": precision,
        "scale": scale,
        "connect.name": "org.apache.kafka.connect.data.Decimal",
        "connect.parameters": {"scale": str(scale), "connect.decimal.precision": str(precision)},
    }


ZONED = {"type": "string", "connect.name": "io.debezium.time.ZonedTimestamp"}


def item_row(**overrides: Any) -> dict[str, Any]:
    """The order_items row record as Debezium writes it (Avro), with ``overrides``."""
    fields: dict[str, Any] = {
        "order_item_id": "long",
        "order_id": "long",
        "order_created_date": {"type": "int", "connect.name": "io.debezium.time.Date"},
        "product_id": "long",
        "quantity": "int",
        "unit_price": decimal(12, 2),
        "created_at": ZONED,
        "created_by": "string",
        "updated_at": ZONED,
        "updated_by": "string",
        "version": "int",
        "deleted_at": ["null", ZONED],
        "deleted_by": ["null", "string"],
        "last_correlation_id": ["null", "string"],
    }
    fields.update(overrides)
    return {
        "type": "record",
        "name": "Value",
        "fields": [{"name": n, "type": t} for n, t in fields.items() if t is not None],
    }


#: silver.order_items as information_schema describes it (0002_silver.sql).
SILVER_ITEMS = {
    "order_item_id": silver_column_type("bigint"),
    "order_id": silver_column_type("bigint"),
    "order_created_date": silver_column_type("date"),
    "product_id": silver_column_type("bigint"),
    "quantity": silver_column_type("integer"),
    "unit_price": silver_column_type("numeric", 12, 2),
    "created_at": silver_column_type("timestamp with time zone"),
    "created_by": silver_column_type("text"),
    "updated_at": silver_column_type("timestamp with time zone"),
    "updated_by": silver_column_type("text"),
    "version": silver_column_type("integer"),
    "deleted_at": silver_column_type("timestamp with time zone"),
    "deleted_by": silver_column_type("text"),
}


def drift(**overrides: Any) -> list[tuple[str, ChangeKind, str | None]]:
    changes = detect_drift(ITEMS, source_columns(item_row(**overrides)), SILVER_ITEMS)
    return [(c.column, c.kind, c.target.sql() if c.target else None) for c in changes]


def test_the_unchanged_source_schema_shows_no_drift() -> None:
    assert drift() == []


def test_an_added_column_is_new() -> None:
    assert drift(gift_note=["null", "string"]) == [("gift_note", ChangeKind.NEW_COLUMN, "text")]


def test_a_numeric_with_more_precision_and_scale_is_widened_to_hold_both() -> None:
    assert drift(unit_price=decimal(14, 3)) == [
        ("unit_price", ChangeKind.WIDENED, "numeric(14, 3)")
    ]


def test_more_scale_at_the_same_precision_keeps_the_integer_digits() -> None:
    # numeric(12,3) holds 9 integer digits, silver numeric(12,2) holds 10: keep both.
    assert drift(unit_price=decimal(12, 3)) == [
        ("unit_price", ChangeKind.WIDENED, "numeric(13, 3)")
    ]


def test_a_smaller_scale_is_narrowed_since_the_source_rewrote_its_rows_rounded() -> None:
    assert drift(unit_price=decimal(12, 1)) == [("unit_price", ChangeKind.NARROWED, None)]


def test_less_precision_at_the_same_scale_needs_nothing() -> None:
    assert drift(unit_price=decimal(10, 2)) == []


def test_int_to_bigint_is_widened() -> None:
    assert drift(quantity="long") == [("quantity", ChangeKind.WIDENED, "bigint")]


def test_a_change_of_kind_is_incompatible() -> None:
    assert drift(quantity="string") == [("quantity", ChangeKind.INCOMPATIBLE, None)]


def test_a_rename_is_a_dropped_column_plus_a_new_one() -> None:
    assert drift(quantity=None, qty="int") == [
        ("quantity", ChangeKind.DROPPED_COLUMN, None),
        ("qty", ChangeKind.NEW_COLUMN, "integer"),
    ]


def test_a_longer_varchar_is_widened_when_the_source_length_is_known() -> None:
    silver = {"updated_by": silver_column_type("character varying", character_maximum_length=40)}
    longer = {"type": "string", "connect.parameters": {"__debezium.source.column.length": "80"}}
    changes = detect_drift(ITEMS, {"updated_by": avro_column_type(longer)}, silver)
    assert [(c.kind, c.target) for c in changes] == [
        (ChangeKind.WIDENED, ColumnType("string", "string", length=80))
    ]


def test_a_renamed_partition_key_is_compared_under_its_silver_name() -> None:
    orders = TABLES["orders"]
    source = {
        "created_date": avro_column_type({"type": "int", "connect.name": "io.debezium.time.Date"})
    }
    assert detect_drift(orders, source, {"order_date": silver_column_type("date")}) == []


def test_the_row_record_comes_from_the_envelopes_before_field() -> None:
    row = item_row()
    envelope = {"type": "record", "fields": [{"name": "before", "type": ["null", row]}]}
    assert envelope_row_schema(envelope) == row


@pytest.mark.parametrize(
    ("kind", "policy", "decision"),
    [
        (ChangeKind.NEW_COLUMN, Policy.EVOLVE, Decision.EVOLVE),
        (ChangeKind.NEW_COLUMN, Policy.IGNORE, Decision.IGNORE),
        (ChangeKind.NEW_COLUMN, Policy.PAUSE, Decision.PAUSE),
        (ChangeKind.WIDENED, Policy.EVOLVE, Decision.EVOLVE),
        (ChangeKind.WIDENED, Policy.IGNORE, Decision.PAUSE),  # ignoring it would round
        (ChangeKind.DROPPED_COLUMN, Policy.EVOLVE, Decision.KEEP),
        (ChangeKind.DROPPED_COLUMN, Policy.PAUSE, Decision.PAUSE),
        (ChangeKind.NARROWED, Policy.EVOLVE, Decision.PAUSE),
        (ChangeKind.NARROWED, Policy.IGNORE, Decision.PAUSE),
        (ChangeKind.INCOMPATIBLE, Policy.EVOLVE, Decision.PAUSE),
    ],
)
def test_nothing_lossy_is_ever_automatic(
    kind: ChangeKind, policy: Policy, decision: Decision
) -> None:
    [change] = [
        c
        for c in detect_drift(
            ITEMS,
            source_columns(
                item_row(
                    gift_note="string",
                    quantity={
                        ChangeKind.WIDENED: "long",
                        ChangeKind.INCOMPATIBLE: "string",
                        ChangeKind.DROPPED_COLUMN: None,
                    }.get(kind, "int"),
                    unit_price=decimal(12, 1) if kind is ChangeKind.NARROWED else decimal(12, 2),
                )
            ),
            SILVER_ITEMS,
        )
        if c.kind is kind
    ]
    assert decide(policy, change) is decision


def test_a_quoted_name_is_never_evolved_automatically() -> None:
    [change] = detect_drift(
        ITEMS, source_columns(item_row(**{"Gift Note": "string"})), SILVER_ITEMS
    )
    assert decide(Policy.EVOLVE, change) is Decision.PAUSE


def test_evolution_ddl_adds_and_widens() -> None:
    [added] = detect_drift(ITEMS, source_columns(item_row(gift_note="string")), SILVER_ITEMS)
    assert evolve_ddl(ITEMS, added) == (
        "ALTER TABLE silver.order_items ADD COLUMN IF NOT EXISTS gift_note text"
    )
    [widened] = detect_drift(
        ITEMS, source_columns(item_row(unit_price=decimal(14, 3))), SILVER_ITEMS
    )
    assert evolve_ddl(ITEMS, widened) == (
        "ALTER TABLE silver.order_items ALTER COLUMN unit_price TYPE numeric(14, 3)"
    )


@pytest.mark.parametrize("policy", list(Policy))
def test_a_new_column_with_a_dropped_one_may_be_a_rename_and_pauses(policy: Policy) -> None:
    """The renamed column's values sit in the source's rows, never sent: silver would hold
    NULL there for every row not changed since, so an operator must backfill it."""
    changes = detect_drift(
        ITEMS, source_columns(item_row(quantity=None, amount="int")), SILVER_ITEMS
    )
    dropped, added = changes
    assert (dropped.kind, added.kind) == (ChangeKind.DROPPED_COLUMN, ChangeKind.NEW_COLUMN)
    assert added.dropped_with == ("quantity",)
    assert decide(policy, added) is Decision.PAUSE
    assert "rename" in added.describe()
