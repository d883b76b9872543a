"""Decode throughput of a typical orders change event: ours vs raw fastavro, same bytes, same run.

Run: ``python -m bench.decode [--records N] [--repeats R]``. Prints a table and writes
``bench/results/decode.json``. Baseline B2 (DESIGN.md section 12) is fastavro's
``schemaless_reader`` over the same Avro body; ours is the full decode (framing, envelope,
logical types, ``ChangeEvent``). Target: ratio >= 0.5. Not a test: no assertion here.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro

from records.change_events import ChangeEvent
from serdes.avro import AvroCodec
from serdes.debezium import DebeziumAvroDecoder
from serdes.framing import frame

RESULTS = Path(__file__).resolve().parent / "results" / "decode.json"
SCHEMA_ID = 11


def _opt(avro_type: Any) -> list[Any]:
    return ["null", avro_type]


def _connect(base: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"type": base, "connect.version": 1, "connect.name": name, **extra}


ROW = {
    "type": "record",
    "name": "Value",
    "namespace": "bitvelocity.public.orders",
    "fields": [
        {"name": "order_id", "type": "long"},
        {"name": "customer_id", "type": "long"},
        {"name": "status", "type": "string"},
        {
            "name": "total_amount",
            "type": {
                "type": "bytes",
                "scale": 2,
                "precision": 12,
                "logicalType": "decimal",
                "connect.name": "org.apache.kafka.connect.data.Decimal",
                "connect.parameters": {"scale": "2", "connect.decimal.precision": "12"},
            },
        },
        {"name": "currency", "type": "string"},
        {"name": "created_at", "type": _connect("string", "io.debezium.time.ZonedTimestamp")},
        {"name": "created_date", "type": _connect("int", "io.debezium.time.Date")},
        {"name": "created_by", "type": _opt("string"), "default": None},
        {
            "name": "updated_at",
            "type": _opt(_connect("long", "io.debezium.time.MicroTimestamp")),
            "default": None,
        },
        {"name": "updated_by", "type": _opt("string"), "default": None},
        {"name": "version", "type": "long"},
        {
            "name": "deleted_at",
            "type": _opt(_connect("string", "io.debezium.time.ZonedTimestamp")),
            "default": None,
        },
    ],
}
SOURCE = {
    "type": "record",
    "name": "Source",
    "namespace": "io.debezium.connector.postgresql",
    "fields": [
        {"name": "version", "type": "string"},
        {"name": "connector", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "ts_ms", "type": "long"},
        {
            "name": "snapshot",
            "type": [_connect("string", "io.debezium.data.Enum"), "null"],
            "default": "false",
        },
        {"name": "db", "type": "string"},
        {"name": "sequence", "type": _opt("string"), "default": None},
        {"name": "ts_us", "type": _opt("long"), "default": None},
        {"name": "ts_ns", "type": _opt("long"), "default": None},
        {"name": "schema", "type": "string"},
        {"name": "table", "type": "string"},
        {"name": "txId", "type": _opt("long"), "default": None},
        {"name": "lsn", "type": _opt("long"), "default": None},
        {"name": "xmin", "type": _opt("long"), "default": None},
    ],
}
ENVELOPE = {
    "type": "record",
    "name": "Envelope",
    "namespace": "bitvelocity.public.orders",
    "fields": [
        {"name": "before", "type": _opt(ROW), "default": None},
        {"name": "after", "type": _opt("bitvelocity.public.orders.Value"), "default": None},
        {"name": "source", "type": SOURCE},
        {
            "name": "transaction",
            "default": None,
            "type": _opt(
                {
                    "type": "record",
                    "name": "block",
                    "namespace": "event",
                    "fields": [
                        {"name": "id", "type": "string"},
                        {"name": "total_order", "type": "long"},
                        {"name": "data_collection_order", "type": "long"},
                    ],
                }
            ),
        },
        {"name": "op", "type": "string"},
        {"name": "ts_ms", "type": _opt("long"), "default": None},
        {"name": "ts_us", "type": _opt("long"), "default": None},
        {"name": "ts_ns", "type": _opt("long"), "default": None},
    ],
}


def _row(status: str) -> dict[str, Any]:
    return {
        "order_id": 1_000_042,
        "customer_id": 8812,
        "status": status,
        "total_amount": Decimal("1234.50"),
        "currency": "EUR",
        "created_at": "2026-11-26T10:15:30.123456Z",
        "created_date": 20783,
        "created_by": "checkout",
        "updated_at": 1795689330123456,
        "updated_by": "fulfilment",
        "version": 3,
        "deleted_at": None,
    }


EVENT = {
    "before": _row("CONFIRMED"),
    "after": _row("SHIPPED"),
    "source": {
        "version": "3.6.1.Final",
        "connector": "postgresql",
        "name": "bitvelocity",
        "ts_ms": 1795689330123,
        "snapshot": "false",
        "db": "bitvelocity",
        "sequence": '["30067616","30067624"]',
        "ts_us": 1795689330123456,
        "ts_ns": 1795689330123456000,
        "schema": "public",
        "table": "orders",
        "txId": 901,
        "lsn": 30067624,
        "xmin": None,
    },
    "transaction": {"id": "901:30067624", "total_order": 1, "data_collection_order": 1},
    "op": "u",
    "ts_ms": 1795689330200,
    "ts_us": 1795689330200111,
    "ts_ns": 1795689330200111222,
}


class _InMemoryRegistry:
    def __init__(self, schema: dict[str, Any]) -> None:
        self._text = json.dumps(schema)

    def schema_by_id(self, _: int) -> str:
        return self._text

    schema_by_global_id = schema_by_id


def _rate(fn: Callable[[], Any], records: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(records):
            fn()
        best = min(best, time.perf_counter() - start)
    return records / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    parsed = fastavro.parse_schema(json.loads(json.dumps(ENVELOPE)))
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed, EVENT)
    body = buffer.getvalue()
    value = frame(SCHEMA_ID, body)
    decoder = DebeziumAvroDecoder(AvroCodec(_InMemoryRegistry(ENVELOPE)))  # type: ignore[arg-type]
    event = decoder.decode(None, value)
    assert isinstance(event, ChangeEvent)
    assert event.after is not None
    assert event.after["total_amount"] == Decimal("1234.50")
    assert event.after["created_at"] == datetime(2026, 11, 26, 10, 15, 30, 123456, tzinfo=UTC)

    schemaless_reader = fastavro.schemaless_reader

    def raw() -> Any:
        return schemaless_reader(io.BytesIO(body), parsed, None)

    def ours() -> Any:
        return decoder.decode(None, value)

    # interleave to share any drift of the machine's load between both
    rates: dict[str, list[float]] = {"raw": [], "ours": []}
    for _ in range(3):
        rates["raw"].append(_rate(raw, args.records, args.repeats))
        rates["ours"].append(_rate(ours, args.records, args.repeats))
    baseline = max(rates["raw"])
    measured = max(rates["ours"])
    ratio = measured / baseline
    result = {
        "event_bytes": len(value),
        "records_per_run": args.records,
        "baseline_fastavro_schemaless_reader_per_s": round(baseline),
        "ours_full_decode_per_s": round(measured),
        "ratio": round(ratio, 3),
        "target_ratio": 0.5,
        "fastavro": fastavro.__version__,
        "python": platform.python_version(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(f"{'decoder':<42}{'records/s':>12}{'us/record':>12}")
    print(f"{'raw fastavro schemaless_reader (B2)':<42}{baseline:>12,.0f}{1e6 / baseline:>12.2f}")
    print(f"{'ours: framing+envelope+logical types':<42}{measured:>12,.0f}{1e6 / measured:>12.2f}")
    print(f"ratio ours/baseline = {ratio:.3f} (target >= 0.5), event {len(value)} bytes")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
