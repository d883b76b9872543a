"""The Faust analytics agent, driven through Faust's in-memory test context (no broker).

A fake record decoder stands in for Avro: each value names a prepared ``ChangeEvent`` or
heartbeat; a fake sink collects what the agent flushes. The clock is fixed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from agents.analytics_faust import register_analytics
from config.errors import PermanentError
from config.settings import FeatureSettings, Settings
from serdes.debezium import ChangeEvent, Operation, SourcePosition
from streams.app import create_app
from tables.analytics import AnalyticsOutputs
from tables.features import CurrencyRates

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
CREATED = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)


def change(table: str, op: Operation, after: dict[str, Any] | None, lsn: int) -> ChangeEvent:
    key = {k: v for k, v in (after or {}).items() if k.endswith("_id")}
    return ChangeEvent(
        op, "public", table, key, None, after, SourcePosition(lsn, 1, None, lsn), CREATED
    )


def order(status: str, amount: str) -> dict[str, Any]:
    return {
        "order_id": 1,
        "customer_id": 9,
        "status": status,
        "currency": "EUR",
        "total_amount": Decimal(amount),
        "created_at": CREATED,
        "deleted_at": None,
    }


class CollectingSink:
    def __init__(self) -> None:
        self.flushed: list[AnalyticsOutputs] = []

    async def flush(self, outputs: AnalyticsOutputs) -> None:
        self.flushed.append(outputs)


async def test_agent_keeps_state_in_tables_and_flushes_revenue_and_features() -> None:
    records: dict[bytes, ChangeEvent | datetime] = {
        b"category": change("categories", Operation.READ, {"category_id": 3, "name": "Books"}, 1),
        b"product": change("products", Operation.READ, {"product_id": 5, "category_id": 3}, 2),
        b"new": change("orders", Operation.CREATE, order("PENDING", "100.00"), 3),
        b"item": change(
            "order_items",
            Operation.CREATE,
            {
                "order_item_id": 8,
                "order_id": 1,
                "product_id": 5,
                "quantity": 2,
                "unit_price": Decimal("50.00"),
            },
            4,
        ),
        b"confirmed": change("orders", Operation.UPDATE, order("CONFIRMED", "100.00"), 5),
        b"beat": NOW,
    }

    def decode_record(_topic: str, _key: bytes | None, value: bytes | None) -> Any:
        if value not in records:
            raise PermanentError("poison")
        return records[value]

    settings = Settings(features=FeatureSettings(flush_interval=timedelta(0)))
    app = create_app(settings, store="memory://")
    sink = CollectingSink()
    rates = CurrencyRates([("EUR", date(2020, 1, 1), Decimal("1.10"))])
    agent, core = register_analytics(
        app, settings, rates=rates, decode_record=decode_record, sink=sink, clock=lambda: NOW
    )
    async with agent.test_context() as driver:
        for value in (b"category", b"product", b"new", b"poison!", b"item", b"confirmed", b"new"):
            await driver.put(value, key=b"k")
        await driver.put(b"confirmed", key=b"k")  # a duplicate: no change
        await driver.put(b"beat", key=b"k")  # closes the 09:00 window (watermark 12:00)

    hourly = [row for batch in sink.flushed for row in batch.hourly]
    features = [row for batch in sink.flushed for row in batch.features]
    # The replayed "new" (LSN 3 < 5) and the duplicate change nothing; the heartbeat closes.
    assert [(r.revenue, r.order_count, r.is_final, r.version) for r in hourly] == [
        (Decimal("100.00"), 1, False, 1),
        (Decimal("100.00"), 1, True, 2),
    ]
    latest = features[-1]
    assert latest.values.total_spent_last_30_days == Decimal("110.00")
    assert latest.values.preferred_category == "Books"
    assert latest.as_of == NOW
    assert dict(core.state.windows)  # the state lives in the Faust tables
    assert type(core.state.windows).__name__ == "Table"
