"""The benchmark's synthetic CDC input and its target verdicts (pure: no stack).

The input must be what production reads: Debezium envelopes in the captured schemas,
registry-framed, decodable by our decoder into the values that were generated; and the
verdicts must follow DESIGN.md section 12 (higher is better for rates, lower for latency).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from bench.cdc_events import RECORDS_PER_ORDER, changes, load_schema
from bench.harness import Row, targets_met
from records.change_events import ChangeEvent, Operation
from serdes.avro import AvroCodec, parse_schema, write_body
from serdes.debezium import DebeziumAvroDecoder
from serdes.framing import frame
from tests.unit.fake_registry import StaticRegistry

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_each_order_is_an_insert_two_items_and_a_confirmation() -> None:
    records = list(changes(4 * RECORDS_PER_ORDER + 2, now=NOW))
    assert len(records) == 4 * RECORDS_PER_ORDER + 2
    first = [(table, env["op"]) for table, _, _, env in records[:RECORDS_PER_ORDER]]
    assert first == [("orders", "c"), ("order_items", "c"), ("order_items", "c"), ("orders", "u")]
    update = records[3][3]
    assert (update["before"]["status"], update["after"]["status"]) == ("PENDING", "CONFIRMED")
    lsns = [env["source"]["lsn"] for _, _, _, env in records]
    assert lsns == sorted(lsns)
    orders = [
        key["order_id"] for table, _, key, env in records if env["op"] == "c" and table == "orders"
    ]
    assert len(orders) == len(set(orders)) == 5


def test_generated_records_decode_with_the_captured_debezium_schemas() -> None:
    ids = {"orders": 31, "order_items": 32}
    registry = StaticRegistry({schema_id: load_schema(t, "value") for t, schema_id in ids.items()})
    registry.schemas.update({100 + i: load_schema(t, "key") for t, i in ids.items()})
    decoder = DebeziumAvroDecoder(AvroCodec(registry))  # type: ignore[arg-type]
    parsed = {
        t: (parse_schema(load_schema(t, "key")), parse_schema(load_schema(t, "value"))) for t in ids
    }
    for table, order_id, key, envelope in changes(2 * RECORDS_PER_ORDER, now=NOW):
        key_schema, value_schema = parsed[table]
        event = decoder.decode(
            frame(100 + ids[table], write_body(key_schema, key)),
            frame(ids[table], write_body(value_schema, envelope)),
        )
        assert isinstance(event, ChangeEvent)
        assert event.table == table
        assert event.op is Operation(envelope["op"])
        assert event.after is not None
        assert event.after["order_id"] == order_id
        if table == "orders":
            assert event.after["total_amount"] == envelope["after"]["total_amount"]
            assert isinstance(event.after["total_amount"], Decimal)
            created = event.after["created_at"]
            assert created.tzinfo is not None
            assert created <= NOW


def test_targets_judge_rates_upwards_latency_downwards_and_missing_rows_as_unknown() -> None:
    rows = {
        "b0": Row("b0", "B0", 100_000.0),
        "b2": Row("b2", "B2", 50_000.0),
        "b3": Row("b3", "B3", 40_000.0),
        "decode": Row("decode", "decode", 30_000.0),
        "sink": Row(
            "sink", "sink", 25_000.0, figures={"peak_rss_mb": 380.0, "rss_before_mb": 200.0}
        ),
        "quix": Row("quix", "quix", 10_000.0),
        "jdbc": Row("jdbc", "jdbc", None, status="unavailable"),
        "latency": Row("latency", "lat", 12_500.0, figures={"p99_ms": 650.0}),
        "analytics": Row(
            "analytics", "an", 30_000.0, figures={"redis_round_trips_per_event": 0.002}
        ),
        "sink-2workers": Row(
            "sink-2workers", "2 workers", 6_000.0, figures={"ratio_to_one_worker": 1.2}
        ),
    }
    checks = targets_met(rows)
    assert checks["sink_2workers_over_one"] == {"value": 1.2, "target": 1.3, "met": False}
    assert checks["sink_records_per_s"]["met"] is True
    assert checks["sink_over_b3"] == {"value": 0.625, "target": 0.6, "met": True}
    assert checks["decode_over_b2"] == {"value": 0.6, "target": 0.8, "met": False}
    assert checks["sink_over_quix"]["met"] is True
    assert checks["sink_over_jdbc"]["met"] is None
    assert checks["p99_ms_at_half_max"]["met"] is False
    assert checks["redis_round_trips_per_event"]["met"] is True
    assert checks["rss_mb_added_by_sink_or_pipeline"] == {
        "value": 180.0,
        "target": 400.0,
        "met": True,
    }


def test_two_workers_are_judged_unknown_when_their_row_failed() -> None:
    failed = Row("sink-2workers", "2 workers", None, status="failed")
    assert targets_met({"sink-2workers": failed})["sink_2workers_over_one"]["met"] is None
    assert targets_met({})["sink_2workers_over_one"]["met"] is None
