"""The end-to-end demo: OLTP workload -> Debezium -> Kafka, checked and summarised.

It migrates the OLTP database, registers the production connector, runs a bounded seeded
workload, waits until every row change the workload made has reached its topic, and
reports per table: row changes written, change events captured, rows in the database.
It fails, saying what is missing, when a change does not arrive in time. Later pipeline
stages (bronze/silver/gold, features, caches) add their own lines as they land.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from config.settings import Settings
from oltp.loadgen import LoadgenConfig, LoadgenResult, run_loadgen
from oltp.schema import CAPTURED_TABLES, migrate_oltp
from sinks.postgres.connection import connect
from streams.connectors import register_oltp_connector

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TableSummary:
    """One table's line of the demo summary."""

    table: str
    changes_written: int
    events_expected: int  # changes plus one tombstone per delete
    events_captured: int
    rows_in_database: int
    soft_deleted: int

    @property
    def complete(self) -> bool:
        return self.events_captured == self.events_expected


@dataclass
class DemoSummary:
    """Everything the demo measured."""

    transactions: int = 0
    loadgen_seconds: float = 0.0
    capture_seconds: float = 0.0
    tables: list[TableSummary] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.tables) and all(t.complete for t in self.tables)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def run_demo(
    settings: Settings, config: LoadgenConfig, progress: Progress, timeout_s: float = 120.0
) -> DemoSummary:
    """Run the demo against the (already running) stack; returns the summary."""
    progress("migrating the OLTP database")
    asyncio.run(migrate_oltp(settings, progress=progress))
    progress(register_oltp_connector(settings))
    topics = {table: settings.topics.cdc_topic(table) for table in CAPTURED_TABLES}
    before = _settled_end_offsets(settings, list(topics.values()), progress)
    progress(f"running the load generator: {config.transactions} transactions, seed {config.seed}")
    result = asyncio.run(run_loadgen(settings, config))
    expected = {table: _events_expected(result, table) for table in topics}
    progress("waiting for every change to reach Kafka")
    started = time.monotonic()
    captured = _wait_for_events(settings, topics, before, expected, timeout_s)
    summary = DemoSummary(
        transactions=result.transactions,
        loadgen_seconds=result.elapsed_s,
        capture_seconds=time.monotonic() - started,
    )
    counts = asyncio.run(_row_counts(settings))
    for table in CAPTURED_TABLES:
        changes = result.tables.get(table)
        rows, soft_deleted = counts[table]
        summary.tables.append(
            TableSummary(
                table=table,
                changes_written=changes.total if changes else 0,
                events_expected=expected[table],
                events_captured=captured[table],
                rows_in_database=rows,
                soft_deleted=soft_deleted,
            )
        )
    return summary


def _events_expected(result: LoadgenResult, table: str) -> int:
    changes = result.tables.get(table)
    return 0 if changes is None else changes.inserts + changes.updates + 2 * changes.deletes


def _end_offsets(consumer: Consumer, admin: AdminClient, topics: list[str]) -> dict[str, int]:
    metadata = admin.list_topics(timeout=5).topics
    ends: dict[str, int] = {}
    for topic in topics:
        partitions = metadata[topic].partitions if topic in metadata else {}
        ends[topic] = sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
            for p in partitions
        )
    return ends


def _settled_end_offsets(
    settings: Settings, topics: list[str], progress: Progress, timeout_s: float = 60.0
) -> dict[str, int]:
    """End offsets once they stop moving (a fresh connector may still be snapshotting)."""
    consumer, admin = _clients(settings)
    try:
        deadline = time.monotonic() + timeout_s
        previous = _end_offsets(consumer, admin, topics)
        while time.monotonic() < deadline:
            time.sleep(1.5)
            current = _end_offsets(consumer, admin, topics)
            if current == previous:
                return current
            progress("waiting for the connector's snapshot to finish")
            previous = current
        return previous
    finally:
        consumer.close()


def _wait_for_events(
    settings: Settings,
    topics: dict[str, str],
    before: dict[str, int],
    expected: dict[str, int],
    timeout_s: float,
) -> dict[str, int]:
    consumer, admin = _clients(settings)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            ends = _end_offsets(consumer, admin, list(topics.values()))
            captured = {table: ends[topic] - before[topic] for table, topic in topics.items()}
            if all(captured[t] >= expected[t] for t in topics) or time.monotonic() > deadline:
                return captured
            time.sleep(0.5)
    finally:
        consumer.close()


def _clients(settings: Settings) -> tuple[Consumer, AdminClient]:
    bootstrap = settings.kafka.bootstrap_servers
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bv-demo-watermarks"})
    return consumer, AdminClient({"bootstrap.servers": bootstrap})


async def _row_counts(settings: Settings) -> dict[str, tuple[int, int]]:
    connection = await connect(settings.postgres)
    try:
        counts = {}
        for table in CAPTURED_TABLES:  # identifiers from our own constant, never input
            rows, soft = await connection.fetchrow(
                f"SELECT count(*), count(deleted_at) FROM public.{table}"  # noqa: S608
            ) or (0, 0)
            counts[table] = (int(rows), int(soft))
        return counts
    finally:
        await connection.close()
