"""CDC-shaped input for the benchmark harness: Debezium envelopes, production framing.

The schemas in ``bench/schemas/`` are the Avro schemas Debezium 3.6.1.Final registered for
``orders`` and ``order_items`` on our connector (captured from a running stack), so the bytes
are what the pipeline reads in production: Confluent framing, 4-byte content id, Avro body.
They are registered under the benchmark's own subjects and the records are produced into
fresh topics with a chosen partition count, without an OLTP database or a connector: the
input is cheap to make at any size and the same for every consumer measured.

Per order the workload is four records: the order's insert (PENDING), two item inserts, and
the order's update to CONFIRMED (revenue-bearing, so the hourly revenue and the features
change). Orders are spread over the last hours, customers over ``CUSTOMERS`` ids.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.sink import CapturedRecord
from serdes.avro import parse_schema, write_body
from serdes.framing import frame
from serdes.registry import RegistryClient

SCHEMAS = Path(__file__).resolve().parent / "schemas"
TABLES = ("orders", "order_items")
CUSTOMERS = 5_000
PRODUCTS = 500
CURRENCIES = ("USD", "EUR", "GBP")
RECORDS_PER_ORDER = 4
SPREAD = timedelta(hours=6)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class CdcInput:
    """Where the input lives, how much of it there is, and the records themselves."""

    topics: dict[str, str]  # table -> topic
    partitions: int
    marks: dict[tuple[str, int], int]  # (topic, partition) -> high watermark (= record count)
    orders: int
    #: As produced: fresh topics and an idempotent producer make the offsets 0, 1, 2, ... per
    #: partition, and the Kafka timestamp is the one given to ``produce``.
    records: list[CapturedRecord] = field(default_factory=list, repr=False)

    @property
    def total(self) -> int:
        return sum(self.marks.values())


def load_schema(table: str, side: str) -> str:
    return (SCHEMAS / f"{table}-{side}.avsc").read_text(encoding="utf-8")


def register_schemas(registry: RegistryClient, topics: dict[str, str]) -> dict[str, int]:
    """Register key and value schemas under ``<topic>-key|value``; ``"<table>-<side>" -> id``."""
    return {
        f"{table}-{side}": registry.register(f"{topic}-{side}", load_schema(table, side))
        for table, topic in topics.items()
        for side in ("key", "value")
    }


def zoned_timestamp(moment: datetime) -> str:
    """``moment`` as Debezium writes a ``timestamptz`` (``io.debezium.time.ZonedTimestamp``)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _order_row(
    order_id: int, created: datetime, status: str, version: int, customers: int = CUSTOMERS
) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": order_id % customers + 1,
        "status": status,
        "currency": CURRENCIES[order_id % len(CURRENCIES)],
        "total_amount": Decimal(order_id % 50_000 + 100) / 100,
        "created_date": (created - _EPOCH).days,
        "created_at": zoned_timestamp(created),
        "created_by": "bench",
        "updated_at": zoned_timestamp(created + timedelta(seconds=version - 1)),
        "updated_by": "bench",
        "version": version,
        "deleted_at": None,
        "deleted_by": None,
    }


def _item_row(item_id: int, order_id: int, created: datetime) -> dict[str, Any]:
    return {
        "order_item_id": item_id,
        "order_id": order_id,
        "order_created_date": (created - _EPOCH).days,
        "product_id": item_id % PRODUCTS + 1,
        "quantity": item_id % 3 + 1,
        "unit_price": Decimal(item_id % 20_000 + 50) / 100,
        "created_at": zoned_timestamp(created),
        "created_by": "bench",
        "updated_at": zoned_timestamp(created),
        "updated_by": "bench",
        "version": 1,
        "deleted_at": None,
        "deleted_by": None,
    }


def debezium_envelope(
    table: str,
    op: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    lsn: int,
    committed: datetime,
) -> dict[str, Any]:
    """The Debezium 3.6 envelope of one change of ``public.<table>`` committed at ``committed``
    (the shape of ``<table>-value.avsc``); the broker-free test driver builds its records too."""
    micros = int((committed - _EPOCH).total_seconds() * 1_000_000)
    return {
        "before": before,
        "after": after,
        "source": {
            "version": "3.6.1.Final",
            "connector": "postgresql",
            "name": "bitvelocity",
            "ts_ms": micros // 1000,
            "snapshot": "false",
            "db": "bitvelocity",
            "sequence": f'["{lsn - 8}","{lsn}"]',
            "ts_us": micros,
            "ts_ns": micros * 1000,
            "schema": "public",
            "table": table,
            "txId": lsn // 64,
            "lsn": lsn,
            "xmin": None,
            "origin": None,
            "origin_lsn": None,
        },
        "transaction": None,
        "op": op,
        "ts_ms": micros // 1000 + 5,
        "ts_us": micros + 5000,
        "ts_ns": (micros + 5000) * 1000,
    }


Change = tuple[str, int, dict[str, Any], dict[str, Any]]  # table, order id, key, envelope


def changes(
    records: int,
    now: datetime | None = None,
    *,
    customers: int = CUSTOMERS,
    spread: timedelta = SPREAD,
) -> Iterator[Change]:
    """The first ``records`` changes of the workload, in commit order: orders of
    ``customers`` customers, created evenly over the ``spread`` before ``now``."""
    orders = -(-records // RECORDS_PER_ORDER)
    start = (now or datetime.now(UTC)) - spread
    step = spread / max(orders, 1)
    lsn = 1_000_000
    made = 0
    for number in range(orders):
        order_id = number + 1
        created = start + step * number
        pending = _order_row(order_id, created, "PENDING", 1, customers)
        confirmed = _order_row(order_id, created, "CONFIRMED", 2, customers)
        key = {"order_id": order_id, "created_date": pending["created_date"]}
        batch: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
            ("orders", key, debezium_envelope("orders", "c", None, pending, lsn, created))
        ]
        for item in (2 * order_id - 1, 2 * order_id):
            row = _item_row(item, order_id, created)
            batch.append(
                (
                    "order_items",
                    {"order_item_id": item},
                    debezium_envelope("order_items", "c", None, row, lsn + 8, created),
                )
            )
        confirmed_at = created + timedelta(seconds=1)
        batch.append(
            (
                "orders",
                key,
                debezium_envelope("orders", "u", pending, confirmed, lsn + 16, confirmed_at),
            )
        )
        lsn += 64
        for table, row_key, envelope in batch:
            if made == records:
                return
            made += 1
            yield table, order_id, row_key, envelope


def create_topics(bootstrap: str, topics: list[str], partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, partitions, 1) for topic in topics], operation_timeout=15
    )
    for future in futures.values():
        future.result(timeout=30)


def preload(
    bootstrap: str,
    registry: RegistryClient,
    topics: dict[str, str],
    *,
    records: int,
    partitions: int,
    customers: int = CUSTOMERS,
    spread: timedelta = SPREAD,
    keep_records: bool = True,
) -> CdcInput:
    """Create the topics and produce ``records`` framed Debezium records into them (kept in
    ``CdcInput.records`` too unless ``keep_records`` is False: a large input need not)."""
    create_topics(bootstrap, list(topics.values()), partitions)
    ids = register_schemas(registry, topics)
    parsed = {name: parse_schema(load_schema(*name.rsplit("-", 1))) for name in ids}
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 500_000,
            "enable.idempotence": True,
        }
    )
    counts: dict[tuple[str, int], int] = {}
    made: list[CapturedRecord] = []
    orders = 0
    workload = changes(records, customers=customers, spread=spread)
    for number, (table, order_id, key, envelope) in enumerate(workload):
        topic = topics[table]
        partition = order_id % partitions
        value = frame(ids[f"{table}-value"], write_body(parsed[f"{table}-value"], envelope))
        key_bytes = frame(ids[f"{table}-key"], write_body(parsed[f"{table}-key"], key))
        stamp = int(time.time() * 1000)
        while True:
            try:
                producer.produce(topic, value, key_bytes, partition=partition, timestamp=stamp)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.5)
        offset = counts.get((topic, partition), 0)
        if keep_records:
            made.append(CapturedRecord(topic, partition, offset, stamp, key_bytes, value, ()))
        counts[(topic, partition)] = offset + 1
        orders = max(orders, order_id)
        if number % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} benchmark records were not delivered to Kafka")
    return CdcInput(topics, partitions, counts, orders, made)


def describe(cdc: CdcInput) -> dict[str, Any]:
    return {
        "records": cdc.total,
        "orders": cdc.orders,
        "partitions_per_topic": cdc.partitions,
        "topics": sorted(cdc.topics.values()),
        "schemas": json.loads(json.dumps([f"{t}-value.avsc" for t in TABLES])),
    }
