"""Capture real Debezium records from throw-away tables, then remove every trace of the run.

Each run has its own PostgreSQL schema, connector, replication slot, publication and topic
prefix (like ``demo/smoke.py``), so parallel runs and other engineers never interfere.
Records are returned raw (key, value, headers as bytes) so tests decode them themselves.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from admin.capture import remove_capture_outputs
from admin.connectors import ConnectClient, ConnectorSpec, debezium_postgres_config
from config.settings import Settings
from sinks.postgres.connection import connect


@dataclass(frozen=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


@dataclass
class CaptureRun:
    """Names of everything one capture creates."""

    settings: Settings
    converter: Literal["avro", "json"] = "avro"
    extra_config: dict[str, str] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))

    @property
    def schema(self) -> str:
        return f"bv_serdes_{self.run_id}"

    @property
    def prefix(self) -> str:
        return f"bvserdes{self.run_id}"

    def topic(self, table: str) -> str:
        return f"{self.prefix}.{self.schema}.{table}"

    def spec(self, tables: Sequence[str]) -> ConnectorSpec:
        return ConnectorSpec(
            name=f"bv-serdes-{self.run_id}",
            database=self.settings.postgres.database,
            tables=[f"{self.schema}.{t}" for t in tables],
            topic_prefix=self.prefix,
            slot=f"bv_serdes_{self.run_id}",
            publication=f"bv_serdes_{self.run_id}",
            converter=self.converter,
            snapshot_mode="no_data",
        )


async def _execute(settings: Settings, statements: Sequence[str]) -> None:
    connection = await connect(settings.postgres)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def fetch(settings: Settings, query: str) -> list[dict[str, Any]]:
    connection = await connect(settings.postgres)
    try:
        return [dict(row) for row in await connection.fetch(query)]
    finally:
        await connection.close()


def capture(
    run: CaptureRun,
    ddl: Sequence[str],
    tables: Sequence[str],
    dml: Sequence[str],
    expected_records: int,
    *,
    select: str | None = None,
    timeout_s: float = 120.0,
    connector_topics: Sequence[str] = (),
    while_topics_exist: Callable[[CaptureRun], None] | None = None,
) -> tuple[list[RawRecord], list[dict[str, Any]]]:
    """Run ``ddl``, capture ``tables``, run ``dml``; return the raw records (by topic, offset)
    and the rows of ``select`` read before cleaning up. ``connector_topics`` adds topics of
    the connector itself by suffix (``transaction``, ``message``), read like the tables'.
    ``while_topics_exist`` runs once the records are read, before anything is removed."""
    settings = run.settings
    spec = run.spec(tables)
    config = {**debezium_postgres_config(settings, spec), **run.extra_config}
    asyncio.run(_execute(settings, [f"CREATE SCHEMA {run.schema}", *ddl]))
    try:
        with ConnectClient(settings) as connect_client:
            connect_client.put(spec.name, config)
            connect_client.wait_running(spec.name)
            asyncio.run(_execute(settings, dml))
            rows = asyncio.run(fetch(settings, select)) if select else []
            topics = [run.topic(t) for t in tables]
            topics += [f"{run.prefix}.{suffix}" for suffix in connector_topics]
            records = _consume(settings, topics, expected_records, timeout_s)
            if while_topics_exist is not None:
                while_topics_exist(run)
            return records, rows
    finally:
        with ConnectClient(settings) as connect_client:
            connect_client.delete(spec.name)
        asyncio.run(_drop_everything(settings, run, spec))
        # The subjects outlive the capture: the caller decodes by schema id, then removes
        # them with remove_capture_outputs(settings, run.prefix).
        remove_capture_outputs(settings, run.prefix, subjects=False)


def _consume(
    settings: Settings, topics: list[str], expected: int, timeout_s: float
) -> list[RawRecord]:
    bootstrap = settings.kafka.bootstrap_servers
    deadline = time.monotonic() + timeout_s
    admin = AdminClient({"bootstrap.servers": bootstrap})
    assignments: list[TopicPartition] = []
    for topic in topics:
        while time.monotonic() < deadline:
            metadata = admin.list_topics(topic=topic, timeout=5).topics.get(topic)
            if metadata is not None and metadata.error is None and metadata.partitions:
                assignments += [TopicPartition(topic, p, 0) for p in sorted(metadata.partitions)]
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"topic {topic} never appeared")
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bv-serdes-capture-{secrets.token_hex(3)}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign(assignments)
    records: list[RawRecord] = []
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=500, timeout=1.0):
                if message.error():
                    continue
                records.append(
                    RawRecord(
                        str(message.topic()),
                        int(message.partition() or 0),
                        int(message.offset() or 0),
                        message.key(),
                        message.value(),
                        tuple((k, v or b"") for k, v in (message.headers() or [])),
                    )
                )
    finally:
        consumer.close()
    assert len(records) >= expected, f"only {len(records)} of {expected} records arrived"
    return records


async def _drop_everything(settings: Settings, run: CaptureRun, spec: ConnectorSpec) -> None:
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
            await asyncio.sleep(0.3)
        await connection.execute(f"DROP PUBLICATION IF EXISTS {spec.publication}")
        await connection.execute(f"DROP SCHEMA IF EXISTS {run.schema} CASCADE")
    finally:
        await connection.close()


def delete_topics(bootstrap: str, prefix: str) -> None:
    """Remove every topic whose name starts with ``prefix`` (they are throw-away)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [t for t in admin.list_topics(timeout=5).topics if t.startswith(prefix)]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=10).values():
            future.result(timeout=15)
