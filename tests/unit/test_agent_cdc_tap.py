"""The CDC tap agent through the test driver: Debezium Avro records (production framing),
turned into the app's ``Record``s as the runtime does (``record_of``) and fed with
``agent.feed``; the tally per table and operation out."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.cdc_tap import register_cdc_tap
from config.settings import Settings
from streams.app import App, record_of
from tests.driver import CdcRecords, item_row, message, order_row, poison_unknown_schema

T = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


async def test_the_tap_counts_real_debezium_records_per_table_and_op_and_survives_poison() -> None:
    cdc = CdcRecords()
    codec = cdc.codec()

    def decode(value: bytes) -> Mapping[str, Any]:
        envelope: Mapping[str, Any] = codec.decode(value)[1]
        return envelope

    pending = order_row(1, 7, "PENDING", "5.00", created=T)
    paid = order_row(1, 7, "PAID", "5.00", created=T, updated=T + timedelta(seconds=1), version=2)
    first = [
        cdc.change("orders", "c", after=pending, lsn=100, committed=T),
        cdc.change(
            "order_items", "c", after=item_row(3, 1, 9, 1, "5.00", created=T), lsn=108, committed=T
        ),
        cdc.poison("orders"),
        cdc.change("orders", "u", before=pending, after=paid, lsn=164, committed=T),
    ]
    tombstone = cdc.topic("orders").record(first[0].key, None)
    second = [
        cdc.change("orders", "d", before=paid, lsn=228, committed=T),
        tombstone,
        cdc.poison("orders", poison_unknown_schema()),
    ]
    app = App("test", Settings())
    agent, counts = register_cdc_tap(app, [cdc.topic("orders").name], decode)

    await agent.feed([record_of(message(r)) for r in first])
    await agent.feed([record_of(message(r)) for r in second])

    assert agent.batches == 2
    assert dict(counts) == {
        "public.orders:c": 1,
        "public.order_items:c": 1,
        "public.orders:u": 1,
        "public.orders:d": 1,
        "bitvelocity.public.orders:undecodable": 2,
    }
