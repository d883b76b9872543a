"""A TRUNCATE record lands in bronze and becomes a truncate mark, never a silver change."""

from __future__ import annotations

from datetime import UTC, datetime

from admin.connectors import ConnectorSpec, debezium_postgres_config
from config.settings import Settings
from records.change_events import ChangeEvent, Operation, SourcePosition
from sinks.postgres.batch import ConsumedRecord, plan_batch

TOPIC = "bitvelocity.public.payments"
AT = datetime(2026, 12, 6, 3, 30, tzinfo=UTC)


def record(op: Operation, lsn: int, offset: int, payment_id: int | None = None) -> ConsumedRecord:
    row = None if payment_id is None else {"payment_id": payment_id, "amount": "1.00"}
    event = ChangeEvent(
        op=op,
        schema="public",
        table="payments",
        key=None if row is None else {"payment_id": payment_id},
        before=None,
        after=row,
        position=SourcePosition(lsn, 7, None, None, "false"),
        committed_at=AT,
    )
    return ConsumedRecord(TOPIC, 1, offset, event)


def test_a_truncate_is_a_bronze_row_and_a_mark_at_its_lsn() -> None:
    plan = plan_batch(
        [
            record(Operation.CREATE, 100, 10, payment_id=1),
            record(Operation.TRUNCATE, 200, 11),
            record(Operation.CREATE, 300, 12, payment_id=2),
        ],
        "pg",
    )
    assert plan.bronze_rows == 3
    assert plan.filtered == 0
    assert [row[3] for row in plan.bronze["payments"]] == ["INSERT", "TRUNCATE", "INSERT"]
    [mark] = plan.truncates
    assert (mark.table, mark.lsn, mark.partition, mark.offset) == ("payments", 200, 1, 11)
    assert mark.bronze_id == plan.bronze["payments"][1][0]
    # Both inserts stay silver changes: the writer applies the truncate after them, by LSN.
    assert sorted(plan.silver["payments"]) == [(1,), (2,)]


def test_a_bronze_only_plan_makes_no_truncate_mark() -> None:
    plan = plan_batch([record(Operation.TRUNCATE, 200, 11)], "pg", bronze_only=True)
    assert plan.bronze_rows == 1
    assert plan.truncates == []


def test_the_connector_emits_truncates() -> None:
    spec = ConnectorSpec("c", "bitvelocity", ["public.payments"], "bitvelocity", "s", "p")
    assert debezium_postgres_config(Settings(), spec)["skipped.operations"] == "none"
