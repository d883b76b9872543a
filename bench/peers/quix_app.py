"""The Quix Streams peer: bronze sink to PostgreSQL and hourly revenue, on our CDC topics.

Runs inside its own virtual environment (``bench/peers/quix.py`` makes it: quixstreams pins
an older confluent-kafka than ours), so it imports nothing of this project. What a Quix user
would write: a deserializer for the registry framing (Confluent wire format, schema fetched
from the registry's ccompat API once per id, fastavro), one StreamingDataFrame per topic
whose rows go to Quix's own ``PostgreSQLSink`` (one table per topic), and on orders a branch
that keeps revenue-bearing orders, re-keys by currency (``group_by``) and sums
``total_amount`` in one-hour tumbling windows of the order's ``created_at``. (The benchmark
workload confirms each order once, so a filter-and-sum gives the same totals as our
retraction-by-order-id; Quix state holds floats, ours Decimals.)

    python quix_app.py --config '{"bootstrap": ..., "registry": ..., ...}'
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import urllib.request
from datetime import datetime, timedelta
from typing import Any

import fastavro
from quixstreams import Application, message_context
from quixstreams.models import Deserializer
from quixstreams.sinks.community.postgresql import PostgreSQLSink

REVENUE_BEARING = {"CONFIRMED", "SHIPPED", "DELIVERED"}


class ConfluentAvroDeserializer(Deserializer):
    """Magic byte, 4-byte schema id, Avro body; writer schemas fetched once per id."""

    def __init__(self, registry_url: str) -> None:
        super().__init__()
        self.registry_url = registry_url.rstrip("/")
        self.schemas: dict[int, Any] = {}

    def __call__(self, value: bytes, ctx: Any) -> Any:
        schema_id = struct.unpack(">I", value[1:5])[0]
        schema = self.schemas.get(schema_id)
        if schema is None:
            url = f"{self.registry_url}/schemas/ids/{schema_id}"
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
                text = json.loads(response.read())["schema"]
            schema = self.schemas[schema_id] = fastavro.parse_schema(json.loads(text))
        return fastavro.schemaless_reader(io.BytesIO(value[5:]), schema, None)


def created_at_ms(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
    """Event time of an order change: the row's ``created_at`` (never the CDC time)."""
    row = value.get("after") or value.get("before") or {}
    created = row.get("created_at")
    if not created:
        return timestamp
    return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() * 1000)


def bronze_row(value: dict[str, Any]) -> dict[str, Any]:
    context = message_context()
    source = value["source"]
    return {
        "source_topic": context.topic,
        "source_partition": context.partition,
        "source_offset": context.offset,
        "operation_type": value["op"],
        "table_name": source["table"],
        "source_lsn": source["lsn"],
        "raw_payload": json.dumps(value.get("after") or value.get("before"), default=str),
    }


def bearing(value: dict[str, Any]) -> bool:
    after = value.get("after")
    if not after:
        return False
    return after["status"] in REVENUE_BEARING and after["deleted_at"] is None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    config = json.loads(parser.parse_args().config)
    app = Application(
        broker_address=config["bootstrap"],
        consumer_group=config["group"],
        auto_offset_reset="earliest",
        commit_interval=1.0,
        state_dir=config["state_dir"],
        loglevel="WARNING",
    )
    pg = config["postgres"]

    def sink(table: str) -> PostgreSQLSink:
        return PostgreSQLSink(
            host=pg["host"],
            port=pg["port"],
            dbname=pg["database"],
            user=pg["user"],
            password=pg["password"],
            table_name=table,
            schema_auto_update=True,
        )

    deserializer = ConfluentAvroDeserializer(config["registry"])
    orders = app.topic(
        config["orders_topic"],
        value_deserializer=deserializer,
        timestamp_extractor=created_at_ms,
    )
    items = app.topic(config["items_topic"], value_deserializer=deserializer)

    orders_sdf = app.dataframe(orders)
    orders_sdf.apply(bronze_row).sink(sink("quix_bronze_orders"))
    revenue = orders_sdf.filter(bearing)
    revenue = revenue.apply(
        lambda v: {"currency": v["after"]["currency"], "amount": float(v["after"]["total_amount"])}
    )
    revenue = revenue.group_by("currency", name="currency")
    revenue = revenue.apply(lambda v: v["amount"])
    revenue.tumbling_window(timedelta(hours=1)).sum().current()

    items_sdf = app.dataframe(items)
    items_sdf.apply(bronze_row).sink(sink("quix_bronze_order_items"))
    app.run()


if __name__ == "__main__":
    main()
