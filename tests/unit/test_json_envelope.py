"""The JsonConverter form (schemas on and off) decodes to the same ChangeEvent."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson

from records.change_events import ChangeEvent, Operation, Tombstone
from serdes.field_plan import compile_column_types
from serdes.json_envelope import DebeziumJsonDecoder
from serdes.logical_types import UNCHANGED

SOURCE = {
    "version": "3.6.1.Final",
    "connector": "postgresql",
    "name": "shop",
    "ts_ms": 1767225600123,
    "snapshot": "false",
    "db": "shopdb",
    "sequence": '["24023119","24023128"]',
    "ts_us": 1767225600123456,
    "schema": "public",
    "table": "orders",
    "txId": 901,
    "lsn": 24023128,
}
ROW = {
    "id": 42,
    "amount": "MDk=",
    "placed_at": 1529507596945104,
    "paid_at": "2024-12-17T08:30:00.5Z",
    "status": "NEW",
    "body": "__debezium_unavailable_value",
}
ENVELOPE = {"before": None, "after": ROW, "source": SOURCE, "op": "c", "ts_ms": 1767225600200}
ROW_SCHEMA = {
    "type": "struct",
    "name": "shop.public.orders.Value",
    "optional": True,
    "fields": [
        {"type": "int64", "optional": False, "field": "id"},
        {
            "type": "bytes",
            "optional": True,
            "name": "org.apache.kafka.connect.data.Decimal",
            "version": 1,
            "parameters": {"scale": "2", "connect.decimal.precision": "10"},
            "field": "amount",
        },
        {
            "type": "int64",
            "optional": True,
            "name": "io.debezium.time.MicroTimestamp",
            "field": "placed_at",
        },
        {
            "type": "string",
            "optional": True,
            "name": "io.debezium.time.ZonedTimestamp",
            "field": "paid_at",
        },
        {"type": "string", "optional": True, "field": "status"},
        {"type": "string", "optional": True, "field": "body"},
    ],
}
EXPECTED_AFTER = {
    "id": 42,
    "amount": Decimal("123.45"),
    "placed_at": datetime(2018, 6, 20, 15, 13, 16, 945104, tzinfo=UTC),
    "paid_at": datetime(2024, 12, 17, 8, 30, 0, 500000, tzinfo=UTC),
    "status": "NEW",
    "body": UNCHANGED,
}


def _with_schema() -> bytes:
    schema = {
        "type": "struct",
        "name": "shop.public.orders.Envelope",
        "fields": [
            {**ROW_SCHEMA, "field": "before"},
            {**ROW_SCHEMA, "field": "after"},
            {"type": "struct", "field": "source", "fields": []},
            {"type": "string", "field": "op"},
        ],
    }
    return orjson.dumps({"schema": schema, "payload": ENVELOPE})


def test_json_with_schemas_decodes_semantic_types_by_name() -> None:
    key = orjson.dumps(
        {
            "schema": {"type": "struct", "fields": [{"type": "int64", "field": "id"}]},
            "payload": {"id": 42},
        }
    )
    event = DebeziumJsonDecoder().decode(key, _with_schema())
    assert isinstance(event, ChangeEvent)
    assert event.op is Operation.CREATE
    assert event.key == {"id": 42}
    assert event.after == EXPECTED_AFTER
    assert event.position.last_commit_lsn == 24023119
    assert event.committed_at == datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)


def test_schemaless_json_uses_the_configured_column_types() -> None:
    plan = compile_column_types(
        {
            "amount": ("org.apache.kafka.connect.data.Decimal", {"scale": 2}),
            "placed_at": "io.debezium.time.MicroTimestamp",
            "paid_at": "io.debezium.time.ZonedTimestamp",
            "body": "string",
        }
    )
    decoder = DebeziumJsonDecoder({"public.orders": plan})
    event = decoder.decode(b'{"id":42}', orjson.dumps(ENVELOPE))
    assert isinstance(event, ChangeEvent)
    assert event.after == EXPECTED_AFTER


def test_schemaless_json_without_a_type_map_still_marks_the_placeholder() -> None:
    event = DebeziumJsonDecoder().decode(b'{"id":42}', orjson.dumps(ENVELOPE))
    assert isinstance(event, ChangeEvent)
    assert event.after is not None
    assert event.after["amount"] == "MDk="  # no names without schemas: left as JSON gives it
    assert event.after["body"] is UNCHANGED


def test_null_value_and_null_payload_are_tombstones() -> None:
    decoder = DebeziumJsonDecoder()
    assert decoder.decode(b'{"id":42}', None) == Tombstone({"id": 42})
    assert decoder.decode(b'{"id":42}', b'{"schema":null,"payload":null}') == Tombstone({"id": 42})


def test_truncate_has_no_rows_and_no_key() -> None:
    value = orjson.dumps({"source": SOURCE, "op": "t", "ts_ms": 1767225600200})
    event = DebeziumJsonDecoder().decode(None, value)
    assert isinstance(event, ChangeEvent)
    assert (event.op, event.key, event.before, event.after) == (
        Operation.TRUNCATE,
        None,
        None,
        None,
    )


def test_logical_message_carries_prefix_and_content() -> None:
    value = orjson.dumps(
        {
            "source": {**SOURCE, "schema": "", "table": ""},
            "op": "m",
            "message": {"prefix": "audit", "content": "aGk="},
        }
    )
    event = DebeziumJsonDecoder().decode(b'{"prefix":"audit"}', value)
    assert isinstance(event, ChangeEvent)
    assert event.op is Operation.MESSAGE
    assert event.message is not None
    assert (event.message.prefix, event.message.content) == ("audit", b"hi")
