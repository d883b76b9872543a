"""The lake agent's logic through the test driver: Debezium bytes decoded as the lake sink
decodes them (``decode_cdc_record``), grouped per topic (``by_topic``) and planned into one
Delta commit per topic (``plan_topic_batch``): bronze rows only, records Delta already holds
skipped, partitions not owned left alone, dead letters kept."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from agents.lakehouse import by_topic, plan_topic_batch
from agents.medallion_records import decode_cdc_record
from serdes.consumer_step import Backoff
from sinks.postgres.batch import BRONZE_COLUMNS, ConsumedRecord
from tests.driver import CdcRecords, InputRecord, item_row, message, order_row

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ORDERS = "bitvelocity.public.orders"
ITEMS = "bitvelocity.public.order_items"


def decoded(cdc: CdcRecords, records: list[InputRecord]) -> list[ConsumedRecord]:
    decoder = cdc.decoder()
    deadline = time.monotonic() + 5
    return [decode_cdc_record(decoder, message(r), Backoff(), deadline) for r in records]


def where(row: tuple[object, ...]) -> tuple[object, ...]:
    names = ("table_name", "source_partition", "source_offset", "source_lsn", "operation_type")
    return tuple(row[BRONZE_COLUMNS.index(name)] for name in names)


def test_each_topic_is_one_commit_of_bronze_rows_from_the_stored_offset_on() -> None:
    cdc = CdcRecords()

    def order(order_id: int, lsn: int, partition: int, status: str = "PENDING") -> InputRecord:
        row = order_row(order_id, 1, status, "10.00", created=T)
        op = "c" if status == "PENDING" else "u"
        return cdc.change("orders", op, after=row, lsn=lsn, committed=T, partition=partition)

    records = [
        order(1, 100, 0),  # p0 offset 0: already in Delta
        order(2, 164, 0),  # p0 offset 1: already in Delta
        order(3, 228, 0),  # p0 offset 2
        order(4, 292, 1),  # p1: not owned by this worker
        cdc.change(
            "order_items", "c", after=item_row(7, 3, 5, 1, "10.00", created=T), lsn=236, committed=T
        ),
        cdc.poison("orders"),  # p0 offset 3
        order(3, 356, 0, "CONFIRMED"),  # p0 offset 4
    ]
    claims: dict[tuple[str, int], int | None] = {(ORDERS, 0): 2, (ITEMS, 0): None}
    topics = by_topic(decoded(cdc, records))
    assert list(topics) == [ORDERS, ITEMS]

    orders = plan_topic_batch(ORDERS, topics[ORDERS], claims, "postgres.bitvelocity")
    assert (orders.topic, orders.table) == (ORDERS, "orders")
    assert list(orders.plans) == [0]
    assert orders.expected == {0: 2}
    assert [where(row) for row in orders.rows()] == [
        ("orders", 0, 2, 228, "INSERT"),
        ("orders", 0, 4, 356, "UPDATE"),
    ]
    plan = orders.plans[0]
    assert plan.silver == {}  # the lake writes bronze only
    assert (plan.first_offset, plan.last_offset, plan.consumed) == (2, 4, 3)
    (letter,) = plan.dead_letters
    assert letter.value == records[5].value

    items = plan_topic_batch(ITEMS, topics[ITEMS], claims, "postgres.bitvelocity")
    assert items.expected == {0: None}
    assert [where(row) for row in items.rows()] == [("order_items", 0, 0, 236, "INSERT")]


def test_a_topic_whose_partitions_are_all_stored_or_not_owned_plans_nothing() -> None:
    cdc = CdcRecords()
    row = order_row(1, 1, "PENDING", "10.00", created=T)
    records = [cdc.change("orders", "c", after=row, lsn=100, committed=T + timedelta(seconds=1))]
    consumed = decoded(cdc, records)

    assert plan_topic_batch(ORDERS, consumed, {(ORDERS, 0): 1}, "s").plans == {}
    assert plan_topic_batch(ORDERS, consumed, {}, "s").plans == {}
