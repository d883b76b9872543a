"""The smoke pipeline: PostgreSQL -> Debezium -> Kafka -> decoded change events, for real.

It creates a throw-away table, captures it with its own Debezium connector (own slot,
publication and topic prefix, so runs never interfere), writes inserts, an update and a
delete, and reads the change events back with confluent-kafka, decoded through the
schema registry. Everything it creates is removed afterwards, the replication slot
included (a forgotten slot makes PostgreSQL keep WAL forever).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from config.errors import ServiceStartError
from config.settings import Settings
from serdes.avro import AvroCodec
from serdes.registry import RegistryClient
from sinks.postgres.connection import connect
from streams.connectors import ConnectClient, ConnectorSpec, debezium_postgres_config

Progress = Callable[[str], None]
SMOKE_SCHEMA = "bv_smoke"

#: The rows written, in order, and the change events they must produce.
SMOKE_WRITES: tuple[tuple[str, tuple[Any, ...]], ...] = (
    ("INSERT INTO {t} (id, name, price) VALUES ($1, $2, $3)", (1, "keyboard", Decimal("49.90"))),
    ("INSERT INTO {t} (id, name, price) VALUES ($1, $2, $3)", (2, "mouse", Decimal("19.99"))),
    ("INSERT INTO {t} (id, name, price) VALUES ($1, $2, $3)", (3, "cable", Decimal("4.50"))),
    ("UPDATE {t} SET price = $2 WHERE id = $1", (2, Decimal("17.49"))),
    ("DELETE FROM {t} WHERE id = $1", (3,)),
)
EXPECTED_OPS = ("c", "c", "c", "u", "d")


@dataclass(frozen=True)
class SmokeChange:
    """One decoded change event."""

    offset: int
    op: str
    key: Any
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    schema_id: int | None


@dataclass(frozen=True)
class SmokeRun:
    """Names of everything one run creates."""

    run_id: str
    converter: Literal["avro", "json"]

    @property
    def table(self) -> str:
        return f"items_{self.run_id}"

    @property
    def qualified_table(self) -> str:
        return f"{SMOKE_SCHEMA}.{self.table}"

    @property
    def topic(self) -> str:
        return f"bvsmoke{self.run_id}.{SMOKE_SCHEMA}.{self.table}"

    def spec(self, database: str) -> ConnectorSpec:
        return ConnectorSpec(
            name=f"bv-smoke-{self.run_id}",
            database=database,
            tables=[self.qualified_table],
            topic_prefix=f"bvsmoke{self.run_id}",
            slot=f"bv_smoke_{self.run_id}",
            publication=f"bv_smoke_{self.run_id}",
            converter=self.converter,
            snapshot_mode="no_data",
        )


def run_smoke(
    settings: Settings,
    progress: Progress,
    converter: Literal["avro", "json"] = "avro",
    timeout_s: float = 120.0,
) -> list[SmokeChange]:
    """Run the whole smoke pipeline once; returns the decoded data change events in order."""
    run = SmokeRun(secrets.token_hex(3), converter)
    spec = run.spec(settings.postgres.database)
    asyncio.run(_create_table(settings, run))
    try:
        with ConnectClient(settings) as connect:
            progress(f"registering Debezium connector {spec.name} ({converter} values)")
            connect.put(spec.name, debezium_postgres_config(settings, spec))
            connect.wait_running(spec.name)
            progress(f"writing {len(SMOKE_WRITES)} changes to {run.qualified_table}")
            asyncio.run(_write_changes(settings, run))
            progress(f"consuming {run.topic}")
            return _consume(settings, run, timeout_s)
    finally:
        progress("cleaning up connector, slot, publication and table")
        with ConnectClient(settings) as connect:
            connect.delete(spec.name)
        asyncio.run(_drop_everything(settings, run, spec))
        _delete_topics(settings.kafka.bootstrap_servers, spec.topic_prefix)


async def _create_table(settings: Settings, run: SmokeRun) -> None:
    connection = await connect(settings.postgres)
    try:
        await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {SMOKE_SCHEMA}")
        await connection.execute(
            f"CREATE TABLE {run.qualified_table} (id integer PRIMARY KEY, name text NOT NULL, "
            "price numeric(10,2) NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"
        )
        # Full before-images on update and delete, not just the key.
        await connection.execute(f"ALTER TABLE {run.qualified_table} REPLICA IDENTITY FULL")
    finally:
        await connection.close()


async def _write_changes(settings: Settings, run: SmokeRun) -> None:
    connection = await connect(settings.postgres)
    try:
        for statement, args in SMOKE_WRITES:
            await connection.execute(statement.format(t=run.qualified_table), *args)
    finally:
        await connection.close()


async def _drop_everything(settings: Settings, run: SmokeRun, spec: ConnectorSpec) -> None:
    connection = await connect(settings.postgres)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            active = await connection.fetchval(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1", spec.slot
            )
            if active is None:
                break
            if not active:
                await connection.execute("SELECT pg_drop_replication_slot($1)", spec.slot)
                break
            await asyncio.sleep(0.5)
        await connection.execute(f"DROP PUBLICATION IF EXISTS {spec.publication}")
        await connection.execute(f"DROP TABLE IF EXISTS {run.qualified_table}")
    finally:
        await connection.close()


def _consume(settings: Settings, run: SmokeRun, timeout_s: float) -> list[SmokeChange]:
    bootstrap = settings.kafka.bootstrap_servers
    deadline = time.monotonic() + timeout_s
    partitions = _wait_for_topic(bootstrap, run.topic, deadline)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bv-smoke-{run.run_id}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(run.topic, p, 0) for p in partitions])
    changes: list[SmokeChange] = []
    try:
        with RegistryClient(settings.registry) as registry:
            codec = AvroCodec(registry)
            while len(changes) < len(EXPECTED_OPS) and time.monotonic() < deadline:
                for message in consumer.consume(num_messages=100, timeout=1.0):
                    if message.error():
                        raise ServiceStartError(f"consuming {run.topic}: {message.error()}")
                    value = message.value()
                    if value is None:  # the tombstone that follows a delete
                        continue
                    offset = message.offset()
                    if offset is None:  # only for messages that were never written
                        continue
                    changes.append(_decode(codec, run.converter, offset, message.key(), value))
    finally:
        consumer.close()
    changes.sort(key=lambda change: change.offset)
    return changes


def _decode(
    codec: AvroCodec, converter: str, offset: int, key: bytes | None, value: bytes
) -> SmokeChange:
    if converter == "json":
        envelope = json.loads(value)
        decoded_key = json.loads(key) if key else None
        schema_id = None
    else:
        schema_id, envelope = codec.decode(value)
        decoded_key = codec.decode(key)[1] if key else None
    return SmokeChange(
        offset,
        envelope["op"],
        decoded_key,
        envelope.get("before"),
        envelope.get("after"),
        schema_id,
    )


def _delete_topics(bootstrap: str, prefix: str) -> None:
    """Remove the run's data and transaction topics (best effort: they are throw-away)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [t for t in admin.list_topics(timeout=5).topics if t.startswith(prefix + ".")]
    for future in admin.delete_topics(topics, operation_timeout=10).values():
        future.result(timeout=15)


def _wait_for_topic(bootstrap: str, topic: str, deadline: float) -> list[int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    while time.monotonic() < deadline:
        metadata = admin.list_topics(topic=topic, timeout=5).topics.get(topic)
        if metadata is not None and metadata.error is None and metadata.partitions:
            return sorted(metadata.partitions)
        time.sleep(0.5)
    raise ServiceStartError(f"topic {topic} did not appear: is the connector producing?")
