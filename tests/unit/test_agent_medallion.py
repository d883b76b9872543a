"""The medallion agent's logic through the test driver: Debezium bytes in, bronze and silver
rows and dead letters out (``decode_cdc_record`` then ``plan_batch``, as ``MedallionSink``
runs them per partition), no broker and no database."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from agents.medallion_records import by_partition, decode_cdc_record
from serdes.consumer_step import Backoff
from serdes.dead_letters import ERROR_CLASS, ORIGIN_OFFSET, ORIGIN_TOPIC, header
from sinks.postgres.batch import BRONZE_COLUMNS, ConsumedRecord, PlannedBatch, plan_batch
from tests.driver import (
    CdcRecords,
    InputRecord,
    audit,
    message,
    order_row,
    poison_unknown_schema,
)

COMMITTED = datetime(2026, 3, 2, 9, 15, 30, tzinfo=UTC)
CREATED = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
SOURCE = "postgres.bitvelocity"


def order(order_id: int, status: str, version: int) -> dict[str, Any]:
    updated = CREATED + timedelta(seconds=version)
    return order_row(
        order_id,
        7,
        status,
        "42.50",
        created=CREATED,
        updated=updated,
        version=version,
        currency="EUR",
    )


def order_change(
    cdc: CdcRecords, op: str, lsn: int, *, partition: int = 0, **rows: Any
) -> InputRecord:
    committed = COMMITTED + timedelta(seconds=lsn % 100)
    return cdc.change("orders", op, lsn=lsn, committed=committed, partition=partition, **rows)


def run(cdc: CdcRecords, records: list[InputRecord]) -> list[PlannedBatch]:
    """What the sink does with one take: decode each record, plan each partition's batch."""
    decoder = cdc.decoder()
    deadline = time.monotonic() + 5
    consumed: list[ConsumedRecord] = [
        decode_cdc_record(decoder, message(r), Backoff(), deadline) for r in records
    ]
    return [plan_batch(group, SOURCE) for group in by_partition(consumed)]


def column(row: tuple[Any, ...], name: str) -> Any:
    return row[BRONZE_COLUMNS.index(name)]


def test_an_insert_then_update_makes_two_bronze_rows_and_one_silver_row_with_the_newest_state() -> (
    None
):
    cdc = CdcRecords()
    records = [
        order_change(cdc, "c", 1_000, after=order(1, "PENDING", 1)),
        order_change(cdc, "u", 1_016, before=order(1, "PENDING", 1), after=order(1, "PAID", 2)),
    ]
    (plan,) = run(cdc, records)

    assert (plan.topic, plan.partition, plan.first_offset, plan.last_offset) == (
        "bitvelocity.public.orders",
        0,
        0,
        1,
    )
    assert (plan.consumed, plan.dead_letters, plan.filtered) == (2, [], 0)
    bronze = plan.bronze["orders"]
    assert [column(r, "operation_type") for r in bronze] == ["INSERT", "UPDATE"]
    assert [column(r, "source_lsn") for r in bronze] == [1_000, 1_016]
    assert [column(r, "source_offset") for r in bronze] == [0, 1]
    assert [column(r, "source_tx_id") for r in bronze] == [15, 15]  # lsn // 64
    assert column(bronze[1], "event_timestamp") == datetime(2026, 3, 2, 9, 15, 46, tzinfo=UTC)
    assert column(bronze[1], "ingestion_date") == date(2026, 3, 2)
    payload = orjson.loads(column(bronze[1], "raw_payload"))
    assert payload["op"] == "u"
    assert payload["before"]["status"] == "PENDING"
    assert payload["after"]["status"] == "PAID"

    (change,) = plan.silver["orders"].values()
    assert (change.row["order_id"], change.row["order_date"]) == (1, date(2026, 3, 2))
    assert change.row["status"] == "PAID"
    assert change.row["total_amount"] == Decimal("42.50")
    assert change.row["version"] == 2
    assert (change.lsn, change.offset, change.hard_deleted) == (1_016, 1, False)


def test_an_older_lsn_after_a_newer_one_of_the_same_key_does_not_win_in_silver() -> None:
    cdc = CdcRecords()
    records = [
        order_change(cdc, "u", 2_080, after=order(3, "SHIPPED", 3)),
        # a re-snapshot's read of an older state arriving later in the partition
        order_change(cdc, "r", 2_016, after=order(3, "PENDING", 1)),
    ]
    (plan,) = run(cdc, records)

    assert len(plan.bronze["orders"]) == 2  # bronze keeps every record
    (change,) = plan.silver["orders"].values()
    assert change.row["status"] == "SHIPPED"
    assert (change.lsn, change.offset) == (2_080, 0)


def test_a_delete_marks_the_silver_row_hard_deleted_at_the_commit_time() -> None:
    cdc = CdcRecords()
    records = [order_change(cdc, "d", 3_010, before=order(4, "CANCELLED", 5))]
    (plan,) = run(cdc, records)

    (change,) = plan.silver["orders"].values()
    assert change.hard_deleted
    assert change.row["deleted_at"] == datetime(2026, 3, 2, 9, 15, 40, tzinfo=UTC)
    assert column(plan.bronze["orders"][0], "operation_type") == "DELETE"


def test_poison_and_an_unknown_schema_id_become_dead_letters_with_reason_headers() -> None:
    cdc = CdcRecords()
    records = [
        order_change(cdc, "c", 4_000, after=order(5, "PENDING", 1)),
        cdc.poison("orders"),
        cdc.poison("orders", poison_unknown_schema()),
        order_change(cdc, "c", 4_064, after=order(6, "PENDING", 1)),
    ]
    (plan,) = run(cdc, records)

    assert plan.consumed == 4
    assert [column(r, "source_offset") for r in plan.bronze["orders"]] == [0, 3]
    assert sorted(key[0] for key in plan.silver["orders"]) == [5, 6]
    assert len(plan.dead_letters) == 2
    for letter, offset, value in zip(
        plan.dead_letters, (1, 2), (records[1], records[2]), strict=True
    ):
        assert letter.topic == "bitvelocity.public.orders.dlq"
        assert letter.value == value.value  # kept byte for byte
        assert header(letter.headers, ORIGIN_TOPIC) == "bitvelocity.public.orders"
        assert header(letter.headers, ORIGIN_OFFSET) == str(offset)
        assert header(letter.headers, ERROR_CLASS)


def test_a_change_of_a_table_without_a_silver_table_is_a_dead_letter() -> None:
    cdc = CdcRecords()
    note = {"note_id": 1, "body": "hello", **audit(COMMITTED)}
    record = cdc.change("audit_notes", "c", after=note, lsn=5_000, committed=COMMITTED)
    (plan,) = run(cdc, [record])

    assert (plan.bronze, plan.silver) == ({}, {})
    (letter,) = plan.dead_letters
    assert letter.reason == "UnknownTableError"
    assert letter.topic == "bitvelocity.public.audit_notes.dlq"
    assert letter.value == record.value


def test_records_of_two_partitions_are_planned_as_two_batches_in_offset_order() -> None:
    cdc = CdcRecords()
    records = [
        order_change(cdc, "c", 6_000, after=order(8, "PENDING", 1), partition=1),
        order_change(cdc, "c", 6_064, after=order(9, "PENDING", 1)),
        order_change(cdc, "u", 6_128, after=order(8, "PAID", 2), partition=1),
    ]
    plans = run(cdc, records)

    assert [(p.partition, p.first_offset, p.last_offset, p.consumed) for p in plans] == [
        (1, 0, 1, 2),
        (0, 0, 0, 1),
    ]
    (eight,) = plans[0].silver["orders"].values()
    assert eight.row["status"] == "PAID"
