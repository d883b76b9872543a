"""An isolated medallion pipeline for one test: its own database, connector, topics, group.

The pipeline itself is built by ``bench.pipeline_env`` (the sink benchmark uses it too).
Also the oracle the sink tests judge by, written independently of the sink: Kafka read
back with confluent-kafka, OLTP rows read with plain SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg

from admin.capture import read_topics
from agents.medallion import MedallionSink
from bench.pipeline_env import (
    SinkEnv,
    eventually,
    expected_records,
    high_watermarks,
    pipeline_environment,
)
from chaos.oracle import column_names
from config.settings import PostgresSettings, Settings
from observability.metrics import Metrics
from sinks.postgres.connection import connect
from sinks.postgres.quality.gate import RulesQualityGate
from sinks.postgres.tables import TABLES

__all__ = [
    "SinkEnv",
    "assert_exactly_once",
    "eventually",
    "expected_records",
    "high_watermarks",
    "kafka_records",
    "running_sink",
    "sink_environment",
    "stored_offsets",
    "wait_until_caught_up",
]


@contextlib.contextmanager
def sink_environment(base: Settings, *, batch_max_records: int = 200) -> Iterator[SinkEnv]:
    with pipeline_environment(base, batch_max_records=batch_max_records) as env:
        yield env


@contextlib.asynccontextmanager
async def running_sink(
    env: SinkEnv,
    worker_id: str = "w1",
    *,
    topics: list[str] | None = None,
    group: str | None = None,
    metrics: Metrics | None = None,
) -> AsyncIterator[MedallionSink]:
    """A sink running in this process until the block ends (then it stops cleanly)."""
    sink = MedallionSink(
        env.settings,
        RulesQualityGate(env.settings),
        worker_id=worker_id,
        topics=topics,
        group_id=None if group is None else f"{env.group}-{group}",
        metrics=metrics,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    try:
        yield sink
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


# -- the oracle ------------------------------------------------------------------------------
def kafka_records(env: SinkEnv) -> dict[tuple[str, int, int], bool]:
    """Every record on the pipeline's topics -> whether it is a tombstone."""
    marks = high_watermarks(env)
    total = sum(marks.values())
    messages = read_topics(
        env.settings.kafka.bootstrap_servers,
        sorted({t for t, _ in marks}),
        done=lambda read: len(read) >= total,
        timeout_s=60,
    )
    return {
        (m.topic() or "", m.partition() or 0, m.offset() or 0): m.value() is None for m in messages
    }


async def stored_offsets(env: SinkEnv) -> dict[tuple[str, int], int]:
    connection = await connect(env.settings.postgres)
    try:
        rows = await connection.fetch(
            "SELECT topic, partition, next_offset FROM ops.consumer_offsets WHERE group_id = $1",
            env.group,
        )
        return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
    finally:
        await connection.close()


async def wait_until_caught_up(env: SinkEnv, expect: int, timeout_s: float = 120) -> None:
    """Until Kafka holds ``expect`` records and the stored offsets reached its high watermarks.

    Waiting for the count first matters: Debezium publishes with a delay, and a sink that
    caught up with a half-published topic is not done.
    """

    async def published() -> bool:
        return sum(high_watermarks(env).values()) >= expect

    await eventually(published, timeout_s=timeout_s, what=f"{expect} records on Kafka")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        marks = high_watermarks(env)
        stored = await stored_offsets(env)
        if marks and all(stored.get(k, 0) >= v for k, v in marks.items() if v > 0):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"sink did not catch up: stored {stored} vs high {marks}")


async def assert_exactly_once(
    env: SinkEnv, dead_lettered: int = 0, *, source: PostgresSettings | None = None
) -> dict[str, Any]:
    """I1, I2, I3 and I6 against the oracle; returns the counts for reporting.

    ``dead_lettered``: how many records the test made undecodable on purpose.
    ``source``: the cluster holding the OLTP tables when the warehouse lives elsewhere.
    """
    records = kafka_records(env)
    marks = high_watermarks(env)
    connection = await connect(env.settings.postgres)
    try:
        bronze: list[tuple[str, int, int]] = []
        for table in TABLES:
            rows = await connection.fetch(
                f"SELECT source_topic, source_partition, source_offset FROM bronze.{table}"
            )
            bronze += [(r[0], r[1], r[2]) for r in rows]
        data_records = {k for k, tombstone in records.items() if not tombstone}
        # I1: one bronze row per non-tombstone record, none twice, none missing.
        assert len(bronze) == len(set(bronze)), "a record landed twice in bronze"
        assert set(bronze) <= data_records
        assert len(data_records - set(bronze)) == dead_lettered
        # I2 / I6: offsets and accounting moved with the rows.
        stored = await stored_offsets(env)
        assert {k: v for k, v in stored.items() if marks.get(k, 0)} == {
            k: v for k, v in marks.items() if v
        }
        totals = await connection.fetchrow(
            "SELECT coalesce(sum(consumed), 0), coalesce(sum(bronze_rows), 0), "
            "coalesce(sum(dead_letters), 0), coalesce(sum(filtered), 0) FROM ops.sink_batches "
            "WHERE group_id = $1",
            env.group,
        )
        assert totals[0] == len(records)
        assert totals[1] == len(bronze)
        assert totals[2] == dead_lettered
        assert totals[1] + totals[2] + totals[3] == totals[0]
        # I3: silver equals the OLTP source, row for row.
        oltp = connection if source is None else await connect(source, env.database)
        try:
            for spec in TABLES.values():
                await _assert_silver_matches_source(connection, spec.name, oltp)
        finally:
            if oltp is not connection:
                await oltp.close()
        return {"records": len(records), "bronze": len(bronze)}
    finally:
        await connection.close()


async def _assert_silver_matches_source(
    connection: asyncpg.Connection, table: str, oltp: asyncpg.Connection | None = None
) -> None:
    spec = TABLES[table]
    oltp = oltp or connection
    # Every column silver has that the source has too (issue 26: a source DDL may have
    # added one to both, or dropped one silver keeps): the spec's and any evolved.
    present = set(await column_names(oltp, "public", table))
    columns = [
        c for c in await column_names(connection, "silver", table) if spec.source_name(c) in present
    ]
    source_columns = [spec.source_name(c) for c in columns]
    source = {
        tuple(r[spec.source_name(k)] for k in spec.key): dict(r)
        for r in await oltp.fetch(f"SELECT {', '.join(source_columns)} FROM public.{table}")
    }
    silver = {
        tuple(r[k] for k in spec.key): dict(r)
        for r in await connection.fetch(
            f"SELECT {', '.join(columns)}, hard_deleted FROM silver.{table}"
        )
    }
    missing = set(source) - set(silver)
    assert not missing, f"{table}: {len(missing)} source rows missing in silver"
    for key, row in silver.items():
        if key not in source:
            assert row["hard_deleted"], f"{table} {key}: in silver, gone from source"
            continue
        expected = source[key]
        for column in columns:
            assert row[column] == expected[spec.source_name(column)], (table, key, column)
        assert not row["hard_deleted"], (table, key)
