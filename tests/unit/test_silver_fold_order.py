"""Within one batch, silver keeps a key's change with the highest (LSN, offset), the same order
the silver upsert applies across batches.

Found by the 30-minute chaos run (I3): a re-snapshot read order item 43 at the snapshot's LSN,
the load deleted it a moment later (higher LSN), and Debezium emitted the snapshot read after
the delete. With both in one batch the later offset won, and silver brought the deleted row
back; across two batches the upsert's (LSN, offset) guard would have refused the read.
"""

from __future__ import annotations

from datetime import UTC, datetime

from records.change_events import ChangeEvent, Operation, SourcePosition
from sinks.postgres.batch import ConsumedRecord, plan_batch

TOPIC = "bitvelocity.public.order_items"
ITEM = {"order_item_id": 43, "order_id": 16, "product_id": 25, "quantity": 2}


def change(op: Operation, lsn: int, offset: int) -> ConsumedRecord:
    row = {**ITEM, "unit_price": "356.75"}
    event = ChangeEvent(
        op=op,
        schema="public",
        table="order_items",
        key={"order_item_id": 43},
        before=row if op is Operation.DELETE else None,
        after=None if op is Operation.DELETE else row,
        position=SourcePosition(
            lsn, lsn // 1000, None, None, "true" if op is Operation.READ else "false"
        ),
        committed_at=datetime(2026, 11, 27, 2, 32, tzinfo=UTC),
    )
    return ConsumedRecord(TOPIC, 0, offset, event)


def silver_state(records: list[ConsumedRecord]) -> tuple[bool, int]:
    [change_] = plan_batch(records, "pg").silver["order_items"].values()
    return change_.hard_deleted, change_.lsn


def test_a_snapshot_read_older_than_a_delete_does_not_bring_the_row_back() -> None:
    batch = [
        change(Operation.CREATE, 41_043_776, 12),
        change(Operation.DELETE, 52_786_136, 301),
        change(Operation.READ, 52_193_936, 312),  # emitted after the delete, read before it
    ]
    assert silver_state(batch) == (True, 52_786_136)


def test_among_equal_lsns_the_later_offset_wins() -> None:
    batch = [change(Operation.READ, 5_000, 7), change(Operation.DELETE, 5_000, 8)]
    assert silver_state(batch) == (True, 5_000)


def test_a_newer_change_still_replaces_an_older_one() -> None:
    batch = [change(Operation.DELETE, 5_000, 7), change(Operation.CREATE, 6_000, 8)]
    assert silver_state(batch) == (False, 6_000)
