"""The broker-free test driver: records in, an agent's logic, rows and outputs out.

In the spirit of Kafka Streams' ``TopologyTestDriver`` (``TestInputTopic`` hands records with
chosen timestamps to the topology, wall-clock time is advanced by hand) and Bytewax's
``TestingSource``/``TestingSink``: a unit test builds ``InputRecord``s (topic, key, value,
timestamp, partition, offset, headers), turns them into ``FakeMessage``s (the few methods of
``confluent_kafka.Message`` our code calls) and feeds them to an agent's public logic, with a
``FakeClock`` where time matters. Nothing here talks to a broker, a registry or a database.

``CdcRecords`` makes what Debezium writes in production: Confluent framing, a 4-byte schema
id and an Avro body of the envelope, with the Debezium 3.6.1 schemas captured from our
connector (``bench/schemas``), so the real decoder (``DebeziumAvroDecoder`` over
``AvroCodec``) reads them from an in-memory registry. Expected values in the tests that use
it are written by hand, never read back from the code under test.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from confluent_kafka import TIMESTAMP_CREATE_TIME, Message

from bench.cdc_events import debezium_envelope, load_schema, zoned_timestamp
from serdes.avro import AvroCodec, parse_schema, write_body
from serdes.debezium import DebeziumAvroDecoder
from serdes.framing import frame
from tests.unit.fake_registry import StaticRegistry

CDC_PREFIX = "bitvelocity"
#: Not framed at all: the decoder's magic-byte check refuses it (a dead letter).
POISON_UNFRAMED = b"\xffthis is not an Avro record"
#: A schema id no registry holds.
UNKNOWN_SCHEMA_ID = 99_999


def poison_unknown_schema() -> bytes:
    """Correctly framed bytes whose schema id the registry does not know (a dead letter)."""
    return frame(UNKNOWN_SCHEMA_ID, b"\x00\x02")


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One Kafka record as a test writes it (``TestRecord`` in Kafka Streams' driver)."""

    topic: str
    key: bytes | None
    value: bytes | None
    timestamp: datetime
    partition: int = 0
    offset: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()


class FakeMessage:
    """What our code reads of a ``confluent_kafka.Message``; never an error."""

    def __init__(self, record: InputRecord) -> None:
        self.record = record

    def topic(self) -> str:
        return self.record.topic

    def partition(self) -> int:
        return self.record.partition

    def offset(self) -> int:
        return self.record.offset

    def key(self) -> bytes | None:
        return self.record.key

    def value(self) -> bytes | None:
        return self.record.value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return list(self.record.headers) or None

    def timestamp(self) -> tuple[int, int]:
        millis = int(self.record.timestamp.timestamp() * 1000)
        return TIMESTAMP_CREATE_TIME, millis

    def error(self) -> None:
        return None


def message(record: InputRecord) -> Message:
    """``record`` as the agents' functions type it (a ``confluent_kafka.Message``)."""
    return cast(Message, FakeMessage(record))


def messages(records: Iterable[InputRecord]) -> list[Message]:
    return [message(record) for record in records]


@dataclass
class FakeClock:
    """Wall-clock time under the test's control: tz-aware UTC, moved only by ``advance``."""

    current: datetime = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> datetime:
        self.current += delta
        return self.current

    def monotonic(self) -> float:
        return self.current.timestamp()


class InputTopic:
    """Hands out offsets 0, 1, 2, ... per partition, as a fresh topic would."""

    def __init__(self, name: str, clock: FakeClock) -> None:
        self.name = name
        self.clock = clock
        self._next: dict[int, int] = {}

    def record(
        self,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int = 0,
        timestamp: datetime | None = None,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> InputRecord:
        offset = self._next.get(partition, 0)
        self._next[partition] = offset + 1
        return InputRecord(
            self.name, key, value, timestamp or self.clock.now(), partition, offset, headers
        )


# -- Debezium changes as production bytes -----------------------------------------------------

#: Columns of tables without a captured schema, typed like the captured ones (``orders``):
#: the envelope and ``source`` stay Debezium's own, only the row record's fields change.
_LIKE_ORDERS: dict[str, dict[str, str]] = {
    "products": {
        "product_id": "order_id",
        "sku": "currency",
        "name": "currency",
        "category_id": "customer_id",
        "price": "total_amount",
        "currency": "currency",
    },
    "categories": {
        "category_id": "order_id",
        "name": "currency",
        "parent_category_id": "customer_id",
    },
    # A captured table the medallion pipeline has no silver table for.
    "audit_notes": {"note_id": "order_id", "body": "currency"},
}
_AUDIT = ("created_at", "created_by", "updated_at", "updated_by", "version", "deleted_at")


def _schemas_like_orders(table: str) -> tuple[str, str]:
    """Key and value schema of ``table``, built from the captured ``orders`` schemas."""
    columns = _LIKE_ORDERS[table]
    value = json.loads(load_schema("orders", "value"))
    row = value["fields"][0]["type"][1]
    by_name = {f["name"]: f for f in row["fields"]}
    fields = [{**copy.deepcopy(by_name[like]), "name": name} for name, like in columns.items()]
    fields += [copy.deepcopy(by_name[name]) for name in (*_AUDIT, "deleted_by")]
    namespace = f"{CDC_PREFIX}.public.{table}"
    row["fields"] = fields
    row["connect.name"] = f"{namespace}.Value"
    value["namespace"] = namespace
    value["connect.name"] = f"{namespace}.Envelope"
    key_column = next(iter(columns))
    key = {
        "type": "record",
        "name": "Key",
        "namespace": namespace,
        "fields": [{"name": key_column, "type": "long"}],
        "connect.name": f"{namespace}.Key",
    }
    return json.dumps(key), json.dumps(value)


#: Key columns of the tables the driver knows, as in their Debezium key schemas.
KEYS = {
    "orders": ("order_id", "created_date"),
    "order_items": ("order_item_id",),
    "products": ("product_id",),
    "categories": ("category_id",),
    "audit_notes": ("note_id",),
}
_EPOCH_DAY = datetime(1970, 1, 1, tzinfo=UTC)


def audit(
    updated: datetime, version: int = 1, *, created: datetime | None = None
) -> dict[str, Any]:
    """The audit columns every captured table carries, as Debezium writes them."""
    return {
        "created_at": zoned_timestamp(created or updated),
        "created_by": "app",
        "updated_at": zoned_timestamp(updated),
        "updated_by": "app",
        "version": version,
        "deleted_at": None,
        "deleted_by": None,
    }


def days(moment: datetime) -> int:
    """A ``date`` column as Debezium writes it (``io.debezium.time.Date``: days since 1970)."""
    return (moment - _EPOCH_DAY).days


def order_row(
    order_id: int,
    customer_id: int,
    status: str,
    total: str,
    *,
    created: datetime,
    updated: datetime | None = None,
    version: int = 1,
    currency: str = "USD",
) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "status": status,
        "currency": currency,
        "total_amount": Decimal(total),
        "created_date": days(created),
        **audit(updated or created, version, created=created),
    }


def item_row(
    item_id: int, order_id: int, product_id: int, quantity: int, price: str, *, created: datetime
) -> dict[str, Any]:
    return {
        "order_item_id": item_id,
        "order_id": order_id,
        "order_created_date": days(created),
        "product_id": product_id,
        "quantity": quantity,
        "unit_price": Decimal(price),
        **audit(created),
    }


def product_row(
    product_id: int,
    category_id: int,
    price: str,
    *,
    updated: datetime,
    version: int = 1,
    name: str = "Lamp",
    created: datetime | None = None,
) -> dict[str, Any]:
    return {
        "product_id": product_id,
        "sku": f"SKU-{product_id}",
        "name": name,
        "category_id": category_id,
        "price": Decimal(price),
        "currency": "USD",
        **audit(updated, version, created=created),
    }


def category_row(category_id: int, name: str, *, updated: datetime) -> dict[str, Any]:
    return {"category_id": category_id, "name": name, "parent_category_id": 0, **audit(updated)}


@dataclass
class CdcRecords:
    """Debezium changes as the connector frames them, and a decoder that reads them back.

    ``change(...)`` takes the change as Debezium describes it (table, op, before, after,
    LSN, commit time) and returns the ``InputRecord`` of its topic, with the next offset of
    its partition. Row values are given as Avro wants them (a ``ZonedTimestamp`` as text,
    a ``Date`` as days, a decimal as ``Decimal``).
    """

    clock: FakeClock = field(default_factory=FakeClock)
    registry: StaticRegistry = field(default_factory=StaticRegistry)
    _ids: dict[tuple[str, str], int] = field(default_factory=dict)
    _parsed: dict[tuple[str, str], Any] = field(default_factory=dict)
    _topics: dict[str, InputTopic] = field(default_factory=dict)

    def topic(self, table: str) -> InputTopic:
        name = f"{CDC_PREFIX}.public.{table}"
        if name not in self._topics:
            self._topics[name] = InputTopic(name, self.clock)
        return self._topics[name]

    def schema_id(self, table: str, side: str) -> int:
        """The registry id of ``table``'s key or value schema (registered on first use)."""
        if (table, side) not in self._ids:
            if table in _LIKE_ORDERS:
                key_text, value_text = _schemas_like_orders(table)
                text = key_text if side == "key" else value_text
            else:
                text = load_schema(table, side)
            schema_id = 100 + len(self._ids)
            self.registry.schemas[schema_id] = text
            self._ids[(table, side)] = schema_id
            self._parsed[(table, side)] = parse_schema(text)
        return self._ids[(table, side)]

    def register(self, schema_text: str) -> int:
        """Put one of our own schemas (``serdes/schemas``) in the registry; its id."""
        schema_id = 100 + len(self._ids)
        self._ids[("", schema_text)] = schema_id
        self.registry.schemas[schema_id] = schema_text
        return schema_id

    def encode(self, table: str, side: str, record: Mapping[str, Any]) -> bytes:
        schema_id = self.schema_id(table, side)
        return frame(schema_id, write_body(self._parsed[(table, side)], dict(record)))

    def change(
        self,
        table: str,
        op: str,
        *,
        key: Mapping[str, Any] | None = None,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
        lsn: int,
        committed: datetime,
        partition: int = 0,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> InputRecord:
        if key is None:
            row = after if after is not None else before
            assert row is not None, "a change needs a key, a before or an after"
            key = {column: row[column] for column in KEYS[table]}
        envelope = debezium_envelope(
            table,
            op,
            None if before is None else dict(before),
            None if after is None else dict(after),
            lsn,
            committed,
        )
        return self.topic(table).record(
            self.encode(table, "key", key),
            self.encode(table, "value", envelope),
            partition=partition,
            timestamp=committed,
            headers=headers,
        )

    def poison(self, table: str, value: bytes = POISON_UNFRAMED, partition: int = 0) -> InputRecord:
        """An undecodable record on ``table``'s topic (no key, ``value`` as given)."""
        return self.topic(table).record(None, value, partition=partition)

    def codec(self) -> AvroCodec:
        """The production Avro codec over this driver's registry."""
        return AvroCodec(self.registry)

    def decoder(self) -> DebeziumAvroDecoder:
        """The production decoder, reading schemas from this driver's registry."""
        return DebeziumAvroDecoder(self.codec())
