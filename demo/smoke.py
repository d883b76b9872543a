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
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from admin.capture import (
    drop_slot_when_released,
    read_topics,
    remove_capture_outputs,
)
from admin.connectors import ConnectClient, ConnectorSpec, debezium_postgres_config
from config.settings import Settings
from serdes.avro import AvroCodec
from serdes.registry import RegistryClient
from sinks.postgres.connection import connect

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
        remove_capture_outputs(settings, spec.topic_prefix)


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
        await drop_slot_when_released(connection, spec.slot)
        await connection.execute(f"DROP PUBLICATION IF EXISTS {spec.publication}")
        await connection.execute(f"DROP TABLE IF EXISTS {run.qualified_table}")
    finally:
        await connection.close()


def _consume(settings: Settings, run: SmokeRun, timeout_s: float) -> list[SmokeChange]:
    messages = read_topics(
        settings.kafka.bootstrap_servers,
        [run.topic],
        done=lambda read: sum(m.value() is not None for m in read) >= len(EXPECTED_OPS),
        timeout_s=timeout_s,
    )
    with RegistryClient(settings.registry) as registry:
        codec = AvroCodec(registry)
        changes = [
            _decode(codec, run.converter, message.offset() or 0, message.key(), value)
            for message in messages
            if (value := message.value()) is not None  # skip the tombstone after a delete
        ]
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
