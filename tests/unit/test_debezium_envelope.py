"""Real Debezium 3.6.1 Avro records (captured from the stack, bytes in data/) decode exactly.

Expected values are the SQL literals of tests/integration/all_types_sql.py, converted by hand.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from config.errors import PermanentError, SchemaNotFoundError
from records.change_events import ChangeEvent, Operation, Tombstone
from serdes.avro import AvroCodec
from serdes.debezium import DebeziumAvroDecoder, parse_sequence
from serdes.logical_types import UNCHANGED
from tests.unit.fake_registry import StaticRegistry

DATA = json.loads((Path(__file__).parent / "data" / "debezium_captured.json").read_text())


def _record(table: str, offset: int) -> dict[str, Any]:
    return next(r for r in DATA["records"] if r["topic"] == table and r["offset"] == offset)


@pytest.fixture
def decoder() -> DebeziumAvroDecoder:
    registry = StaticRegistry({int(k): v for k, v in DATA["schemas"].items()})
    return DebeziumAvroDecoder(AvroCodec(registry))  # type: ignore[arg-type]


def _decode(decoder: DebeziumAvroDecoder, table: str, offset: int) -> ChangeEvent | Tombstone:
    r = _record(table, offset)
    headers = [(k, v.encode()) for k, v in r["headers"]]
    key = bytes.fromhex(r["key"]) if r["key"] else None
    value = bytes.fromhex(r["value"]) if r["value"] else None
    return decoder.decode(key, value, headers)


def test_insert_with_every_type_decodes_to_the_inserted_values(
    decoder: DebeziumAvroDecoder,
) -> None:
    event = _decode(decoder, "all_types", 0)
    assert isinstance(event, ChangeEvent)
    assert event.op is Operation.CREATE
    assert event.key == {"id": 1}
    assert event.before is None
    assert event.after == {
        "id": 1,
        "amount": Decimal("123.45"),
        "fine": Decimal("12345678901234567890.0123456789"),
        "free": Decimal("3141.5926"),
        "day": date(2024, 2, 29),
        "clock": time(13, 14, 15, 123456),
        "clock_ms": time(8, 0, 0, 500000),
        "clock_tz": time(8, 11, 12, 345000, tzinfo=UTC),  # 10:11:12.345+02
        "moment": datetime(2018, 6, 20, 15, 13, 16, 945104, tzinfo=UTC),
        "moment_ms": datetime(2018, 6, 20, 15, 13, 16, 900000, tzinfo=UTC),
        "moment_tz": datetime(2024, 12, 17, 8, 30, 0, 500000, tzinfo=UTC),
        "span": timedelta(days=3, hours=4, minutes=5, seconds=6, milliseconds=789),
        "ident": UUID("ef9b5beb-1f7c-4b8e-a6c1-0f8c2f4c8a11"),
        "doc": {"a": [1, 2.5, "x"], "b": None},
        "docb": {"k": {"n": 1}},
        "feeling": "happy",
        "numbers": [1, -2, 3],
        "words": ["hello", "wo rld"],
        "blob": b"\x00\xff\x10",
        "flag": True,
        "ratio": 0.25,
        "small": -32768,
        "large": 9223372036854775807,
    }


def test_negative_pre_1970_and_dst_values(decoder: DebeziumAvroDecoder) -> None:
    event = _decode(decoder, "all_types", 1)
    assert isinstance(event, ChangeEvent)
    after = event.after
    assert after is not None
    assert after["amount"] == Decimal("-42.50")
    assert after["fine"] == Decimal("-0.0000000001")
    assert after["free"] == Decimal("-0.5")
    assert after["day"] == date(1969, 7, 20)
    assert after["clock_ms"] == time(23, 59, 59, 999000)
    assert after["clock_tz"] == time(5, 0, tzinfo=UTC)  # 00:00-05
    assert after["moment"] == datetime(1900, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    assert after["moment_ms"] == datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    # 2024-03-31 01:30 Europe/Berlin is still CET (+01), the jump to CEST is at 02:00
    assert after["moment_tz"] == datetime(2024, 3, 31, 0, 30, tzinfo=UTC)
    assert after["span"] == -timedelta(days=1, microseconds=1)
    assert after["doc"] == []
    assert after["docb"] == "text"
    assert after["words"] == [None, ""]
    assert after["blob"] == b""


def test_far_future_and_large_scale_values(decoder: DebeziumAvroDecoder) -> None:
    event = _decode(decoder, "all_types", 2)
    assert isinstance(event, ChangeEvent)
    after = event.after
    assert after is not None
    assert after["fine"] == Decimal("9999999999999999999999999999.9999999999")
    assert after["day"] == date(9999, 12, 31)
    assert after["moment"] == datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert after["moment_ms"] == datetime(1, 1, 1, tzinfo=UTC)
    # 2024-10-27 02:30 Europe/Berlin is ambiguous; PostgreSQL takes the later (+01)
    assert after["moment_tz"] == datetime(2024, 10, 27, 1, 30, tzinfo=UTC)
    assert after["free"] == Decimal("0")
    assert after["doc"] is None  # JSON 'null' parses to None
    assert after["ident"] is None


def test_source_position_commit_time_and_transaction(decoder: DebeziumAvroDecoder) -> None:
    event = _decode(decoder, "all_types", 0)
    assert isinstance(event, ChangeEvent)
    assert event.schema.startswith("bv_serdes_")
    assert event.table == "all_types"
    assert event.position.lsn == 30067024
    assert event.position.tx_id == 900
    assert event.position.last_commit_lsn is None
    assert event.position.sequence_lsn == 30067024
    assert not event.position.is_snapshot
    assert event.committed_at == datetime(2026, 11, 26, 19, 23, 35, 694296, tzinfo=UTC)
    assert event.transaction is not None
    assert event.transaction.id == "900:30067024"
    assert event.schema_id == 47


def test_update_carries_the_full_before_image(decoder: DebeziumAvroDecoder) -> None:
    event = _decode(decoder, "all_types", 4)
    assert isinstance(event, ChangeEvent)
    assert event.op is Operation.UPDATE
    assert event.before is not None
    assert event.after is not None
    assert event.before["amount"] == Decimal("1.28")
    assert event.before["free"] == Decimal("12345678901234567890123456789012345678901234.5")
    assert event.after["amount"] == Decimal("0.01")
    assert event.after["free"] is None


def test_delete_then_tombstone(decoder: DebeziumAvroDecoder) -> None:
    delete = _decode(decoder, "all_types", 5)
    tombstone = _decode(decoder, "all_types", 6)
    assert isinstance(delete, ChangeEvent)
    assert delete.op is Operation.DELETE
    assert delete.after is None
    assert delete.before is not None
    assert delete.before["id"] == 3
    assert tombstone == Tombstone({"id": 3})


def test_primary_key_change_is_delete_tombstone_create_linked_by_headers(
    decoder: DebeziumAvroDecoder,
) -> None:
    delete, tombstone, create = (_decode(decoder, "all_types", o) for o in (7, 8, 9))
    assert isinstance(delete, ChangeEvent)
    assert isinstance(create, ChangeEvent)
    assert (delete.op, delete.key, delete.new_key) == (Operation.DELETE, {"id": 4}, {"id": 40})
    assert tombstone == Tombstone({"id": 4}, new_key={"id": 40})
    assert (create.op, create.key, create.old_key) == (Operation.CREATE, {"id": 40}, {"id": 4})


def test_unchanged_toast_columns_become_the_unchanged_marker(
    decoder: DebeziumAvroDecoder,
) -> None:
    event = _decode(decoder, "toasted", 1)
    assert isinstance(event, ChangeEvent)
    assert event.after == {
        "id": 1,
        "counter": 1,
        "body": UNCHANGED,
        "numbers": UNCHANGED,
        "blob": UNCHANGED,
        "docb": UNCHANGED,
    }
    assert event.has_unchanged
    previous = {"id": 1, "counter": 0, "body": "long text", "numbers": [1], "blob": b"x"}
    assert event.merged_after(previous) == {
        "id": 1,
        "counter": 1,
        "body": "long text",
        "numbers": [1],
        "blob": b"x",
        "docb": UNCHANGED,  # unknown before too: the sink must leave the column alone
    }


def test_unknown_schema_id_is_a_permanent_error(decoder: DebeziumAvroDecoder) -> None:
    with pytest.raises(SchemaNotFoundError):
        decoder.decode(None, b"\x00\x00\x00\x03\xe7" + b"\x02", None)


def test_truncated_body_is_a_permanent_error(decoder: DebeziumAvroDecoder) -> None:
    value = bytes.fromhex(_record("all_types", 0)["value"])
    with pytest.raises(PermanentError):
        decoder.decode(None, value[:-3], None)
    with pytest.raises(PermanentError, match="left after"):
        decoder.decode(None, value + b"\x00", None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('["24023119","24023128"]', (24023119, 24023128)),
        ('[null,"26834688"]', (None, 26834688)),
        (None, (None, None)),
    ],
)
def test_source_sequence_is_two_lsns_in_a_json_string(
    text: str | None, expected: tuple[int | None, int | None]
) -> None:
    assert parse_sequence(text) == expected
