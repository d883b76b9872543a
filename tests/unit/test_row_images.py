"""Pure logic of image completeness, changed columns and transaction records (hand-made rows;
the real connector output is in test_decoder_contract.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.errors import EnvelopeError
from records.images import Image, after_image, before_image, changed_columns, is_key_only
from serdes.field_plan import (
    compile_avro_defaults,
    compile_avro_row,
    compile_connect_defaults,
    compile_connect_row,
)
from serdes.logical_types import UNCHANGED
from serdes.transactions import (
    MESSAGES_COLLECTION,
    TransactionStatus,
    build_transaction_event,
)

COLUMNS = st.lists(
    st.text(alphabet="abcdefgh_", min_size=1, max_size=6), min_size=1, max_size=8, unique=True
)
#: Values a real column can hold, none of them a zero value.
NON_ZERO = st.one_of(
    st.integers(min_value=1),
    st.text(min_size=1).filter(lambda s: s not in ("AA==", "00:00:00Z", "1970-01-01T00:00:00Z")),
    st.decimals(allow_nan=False, allow_infinity=False).filter(bool),
    st.just(True),
    st.datetimes(timezones=st.just(UTC)).filter(lambda d: d != datetime(1970, 1, 1, tzinfo=UTC)),
    st.lists(st.integers(), min_size=1),
)
#: What Debezium writes for a column PostgreSQL left out of a key-only image.
ZEROS = st.sampled_from(
    [
        *(None, 0, 0.0, "", Decimal("0.00"), False, b""),
        *(datetime(1970, 1, 1, tzinfo=UTC), date(1970, 1, 1), time(0)),
        *("1970-01-01T00:00:00Z", "AA=="),  # schemaless JSON without a column map
    ]
)


@given(COLUMNS, st.data())
def test_changed_columns_are_exactly_the_columns_given_new_values(
    columns: list[str], data: st.DataObject
) -> None:
    before = {c: data.draw(NON_ZERO) for c in columns}
    touched = data.draw(st.sets(st.sampled_from(columns)))
    after: dict[str, Any] = {}
    for column in columns:
        if column in touched:
            after[column] = data.draw(NON_ZERO.filter(lambda v, old=before[column]: v != old))
        else:  # untouched: the same value, or left out as an unchanged TOAST value
            after[column] = data.draw(st.sampled_from([before[column], UNCHANGED]))
    assert changed_columns(before, after) == touched


@given(COLUMNS, st.data())
def test_an_image_of_the_key_and_zero_values_is_key_only_and_one_real_value_makes_it_full(
    columns: list[str], data: st.DataObject
) -> None:
    key_columns = columns[: data.draw(st.integers(1, len(columns)))]
    key = {c: data.draw(NON_ZERO) for c in key_columns}
    others = [c for c in columns if c not in key]
    row = {**key, **{c: data.draw(ZEROS) for c in others}}
    assert is_key_only(row, key) == bool(others)
    assert before_image("d", row, key) is (Image.KEY_ONLY if others else Image.FULL)
    if others:
        real = data.draw(st.sampled_from(others))
        row[real] = data.draw(NON_ZERO)
        assert before_image("d", row, key) is Image.FULL
        assert before_image("u", row, key) is Image.FULL


def test_unchanged_columns_make_an_image_partial_before_the_key_only_test() -> None:
    key = {"id": 1}
    assert before_image("d", {"id": 1, "body": UNCHANGED, "n": 0}, key) is Image.UNCHANGED_COLUMNS
    assert after_image("u", {"id": 1, "body": UNCHANGED}) is Image.UNCHANGED_COLUMNS
    assert after_image("u", {"id": 1, "body": "x"}) is Image.FULL


@pytest.mark.parametrize(
    ("op", "before", "expected"),
    [
        ("u", None, Image.MISSING),  # REPLICA IDENTITY DEFAULT update
        ("d", None, Image.MISSING),  # REPLICA IDENTITY NOTHING delete
        ("c", None, Image.NONE),
        ("r", None, Image.NONE),
        ("t", None, Image.NONE),
        ("m", None, Image.NONE),
    ],
)
def test_a_missing_before_image_is_partial_only_where_the_change_had_an_old_row(
    op: str, before: dict[str, Any] | None, expected: Image
) -> None:
    assert before_image(op, before, {"id": 1}) is expected


def test_without_a_key_no_image_is_key_only() -> None:
    assert not is_key_only({"a": None, "b": 0}, None)
    assert before_image("d", {"a": None, "b": 0}, None) is Image.FULL


def test_nan_to_nan_is_no_change_and_a_schema_change_is() -> None:
    nan = float("nan")
    assert changed_columns({"x": nan, "y": 1}, {"x": float("nan"), "y": 1}) == frozenset()
    assert changed_columns({"x": 1}, {"x": 1, "added": None}) == {"added"}
    assert changed_columns({"x": Decimal("1.5")}, {"x": Decimal("1.50")}) == frozenset()


def test_transaction_end_sums_message_entries_and_splits_the_tx_id() -> None:
    monitor = (
        "io.debezium.connector.postgresql.LogicalDecodingMessageMonitor$LogicalDecodingMessageId"
    )
    event = build_transaction_event(
        {
            "status": "END",
            "id": "571:53195832",
            "event_count": 4,
            "data_collections": [
                {"data_collection": "public.orders", "event_count": 2},
                None,
                {"data_collection": f"{monitor}@1a2b", "event_count": 1},
                {"data_collection": f"{monitor}@3c4d", "event_count": 1},
            ],
            "ts_ms": 1_700_000_000_123,
        }
    )
    assert event.status is TransactionStatus.END
    assert event.tx_id == 571
    assert event.event_count == 4
    assert event.data_collections == {"public.orders": 2, MESSAGES_COLLECTION: 2}
    assert event.committed_at == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    "payload",
    [
        {"status": "ROLLBACK", "id": "1:2", "ts_ms": 1},
        {"status": "BEGIN", "id": 12, "ts_ms": 1},
        {"status": "BEGIN", "id": "1:2"},
        {"status": "END", "id": "1:2", "ts_ms": 1, "data_collections": [{"event_count": 1}]},
        {"status": "END", "id": "1:2", "ts_ms": 1, "data_collections": 5},
    ],
)
def test_malformed_transaction_records_are_envelope_errors(payload: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeError):
        build_transaction_event(payload)


def test_a_transaction_id_without_a_numeric_head_has_no_tx_id() -> None:
    event = build_transaction_event({"status": "BEGIN", "id": "abc:1", "ts_ms": 0})
    assert event.tx_id is None
    assert event.data_collections == {}


def test_schema_defaults_say_nothing_only_in_their_own_column() -> None:
    key = {"id": 1}
    row = {"id": 1, "status": "PENDING", "version": 1}
    defaults = {"status": "PENDING", "version": 1}
    assert before_image("d", row, key, defaults) is Image.KEY_ONLY
    assert before_image("d", row, key, {"status": "PENDING"}) is Image.FULL
    assert before_image("d", row, key, {"status": 1, "version": "PENDING"}) is Image.FULL
    assert before_image("d", row, key) is Image.FULL


def test_avro_and_connect_defaults_decode_to_the_values_a_row_would_hold() -> None:
    zoned = {"type": "string", "connect.name": "io.debezium.time.ZonedTimestamp"}
    decimal = {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}
    record = {
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "status", "type": {"type": "string"}, "default": "PENDING"},
            {"name": "amount", "type": decimal, "default": "\u0003\u00e7"},  # 999 unscaled
            {"name": "at", "type": zoned, "default": "1970-01-01T00:00:00.000000Z"},
            {"name": "note", "type": ["null", "string"], "default": None},  # optional: null
        ]
    }
    plan = compile_avro_row(record, {})
    assert compile_avro_defaults(record, plan) == {
        "status": "PENDING",
        "amount": Decimal("9.99"),
        "at": datetime(1970, 1, 1, tzinfo=UTC),
    }
    struct = {
        "fields": [
            {"field": "id", "type": "int64", "optional": False},
            {"field": "version", "type": "int32", "optional": False, "default": 1},
            {
                "field": "amount",
                "type": "bytes",
                "optional": False,
                "name": "org.apache.kafka.connect.data.Decimal",
                "parameters": {"scale": "2"},
                "default": "A+c=",  # base64 of 999 unscaled
            },
            {"field": "note", "type": "string", "optional": True, "default": "x"},
        ]
    }
    assert compile_connect_defaults(struct, compile_connect_row(struct)) == {
        "version": 1,
        "amount": Decimal("9.99"),
    }
