"""A change PostgreSQL cannot store is dead-lettered by the batch plan, not written.

A NUL character fails text and jsonb alike; written, it would fail the whole batch's
transaction again on every retry and stall the partition (I7). Hostile but storable values
(SQL meta-characters, very long strings) are planned like any other value: they travel as
COPY data and bind parameters, never as SQL text (see tests/integration/test_hostile_inputs.py).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import orjson
import pytest

from records.change_events import ChangeEvent, Operation, SourcePosition
from serdes.dead_letters import ERROR_CLASS, RecordOrigin, header
from sinks.postgres.batch import ConsumedRecord, UnstorableValueError, plan_batch

TOPIC = "bitvelocity.public.customers"
SQL_META = "Robert'); DROP TABLE bronze.customers; -- $1 $$ \\ %s"


def change(offset: int, first_name: str) -> ConsumedRecord:
    after = {"customer_id": offset, "email": f"c{offset}@example.com", "first_name": first_name}
    event = ChangeEvent(
        op=Operation.CREATE,
        schema="public",
        table="customers",
        key={"customer_id": offset},
        before=None,
        after=after,
        position=SourcePosition(1000 + offset, 7, None, None, "false"),
        committed_at=datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
    )
    origin = RecordOrigin(TOPIC, 0, offset, b"key", b"value-bytes-as-consumed")
    return ConsumedRecord(TOPIC, 0, offset, event, origin=origin)


def test_a_nul_character_dead_letters_only_its_record() -> None:
    plan = plan_batch([change(1, "Ann"), change(2, "A\x00nn"), change(3, SQL_META)], "pg")
    assert plan.bronze_rows == 2
    [letter] = plan.dead_letters
    assert letter.value == b"value-bytes-as-consumed"
    assert header(letter.headers, ERROR_CLASS) == "UnstorableValueError"
    payloads = [orjson.loads(row[5]) for row in plan.bronze["customers"]]
    assert [p["after"]["first_name"] for p in payloads] == ["Ann", SQL_META]
    assert plan.bronze_rows + len(plan.dead_letters) + plan.filtered == plan.consumed


@pytest.mark.parametrize("where", ["key", "value"])
def test_a_nul_in_a_column_name_or_a_long_string_is_caught(where: str) -> None:
    record = change(1, "x" * 100_000)
    event = record.decoded
    assert isinstance(event, ChangeEvent)
    after = dict(event.after or {})
    if where == "key":
        after["bad\x00column"] = 1
    else:
        after["first_name"] += "\x00"
    hostile = ConsumedRecord(
        TOPIC, 0, 1, dataclasses.replace(event, after=after), origin=record.origin
    )
    assert len(plan_batch([hostile], "pg").dead_letters) == 1


def test_a_literal_backslash_u0000_text_is_not_a_nul() -> None:
    plan = plan_batch([change(1, "C:\\u0000\\path")], "pg")
    assert plan.bronze_rows == 1
    assert plan.dead_letters == []


def test_without_its_bytes_a_nul_change_is_an_error_not_a_write() -> None:
    record = change(1, "A\x00nn")
    bare = ConsumedRecord(record.topic, record.partition, record.offset, record.decoded)
    with pytest.raises(UnstorableValueError, match="NUL"):
        plan_batch([bare], "pg")
