"""The end-to-end demo: OLTP workload -> Debezium -> Kafka -> every agent, checked and summarised.

It migrates the OLTP database, registers the production connector, runs a bounded seeded
workload, waits until every row change the workload made has reached its topic, then runs
the worker's agents (medallion, analytics, cache) until the medallion offsets and the
analytics positions reach every topic's end. While they run it does the cache round
(``demo_cache``) and asks the web views (``demo_views``); once they stopped, it judges gold
and the Redis feature store against SQL over the OLTP tables (``demo_checks``). It reports
per table: row changes written, change events captured, rows in the database, bronze and
silver rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from admin.capture import partition_high_watermarks
from admin.connectors import register_oltp_connector
from agents.analytics import AnalyticsRunner, analytics_topics
from config.errors import TransientError
from config.settings import Settings
from demo.cache import CacheRound, cache_round
from demo.checks import AnalyticsCheck, check_analytics
from demo.views import ViewsAnswer, ask_views
from oltp.loadgen import LoadgenConfig, LoadgenResult, run_loadgen
from oltp.schema import CAPTURED_TABLES, migrate_oltp
from sinks.postgres.connection import connect
from sinks.postgres.warehouse import migrate_warehouse
from streams.worker import AGENTS, run_worker

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
    bronze_rows: int = 0
    silver_live_rows: int = 0
    silver_hard_deleted: int = 0

    @property
    def complete(self) -> bool:
        return self.events_captured == self.events_expected

    @property
    def silver_matches(self) -> bool:
        """Silver holds every live OLTP row (I3; values are checked by the test suite)."""
        return self.silver_live_rows == self.rows_in_database


@dataclass
class DemoSummary:
    """Everything the demo measured."""

    transactions: int = 0
    loadgen_seconds: float = 0.0
    capture_seconds: float = 0.0
    sink_seconds: float = 0.0
    sink_batches: int = 0
    dead_letters: int = 0
    gold_current_facts: int = 0
    quality_failures: int = 0
    tables: list[TableSummary] = field(default_factory=list)
    analytics: AnalyticsCheck | None = None
    cache: CacheRound | None = None
    views: ViewsAnswer | None = None

    @property
    def captured_ok(self) -> bool:
        return bool(self.tables) and all(t.complete and t.silver_matches for t in self.tables)

    @property
    def ok(self) -> bool:
        return (
            self.captured_ok
            and self.analytics is not None
            and self.analytics.ok
            and self.cache is not None
            and self.cache.ok
            and self.views is not None
            and self.views.ok
        )

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def run_demo(
    settings: Settings, config: LoadgenConfig, progress: Progress, timeout_s: float = 120.0
) -> DemoSummary:
    """Run the demo against the (already running) stack; returns the summary."""
    progress("migrating the OLTP database and the warehouse")
    asyncio.run(migrate_oltp(settings, progress=progress))
    asyncio.run(migrate_warehouse(settings, progress=progress))
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
    progress("running every agent (medallion, analytics, cache) until each caught up")
    started = time.monotonic()
    agents = asyncio.run(_run_agents(settings, list(topics.values()), timeout_s, progress))
    summary.sink_seconds = time.monotonic() - started
    summary.sink_batches = agents.medallion.batches
    summary.cache = agents.cache
    summary.views = agents.views
    progress("checking gold and the Redis feature store against SQL over the OLTP tables")
    summary.analytics = asyncio.run(check_analytics(settings, datetime.now(UTC)))
    layers = asyncio.run(_layer_counts(settings))
    summary.dead_letters = layers.dead_letters
    summary.gold_current_facts = layers.gold_current_facts
    summary.quality_failures = layers.quality_failures
    for table in CAPTURED_TABLES:
        changes = result.tables.get(table)
        rows, soft_deleted, bronze, live, hard_deleted = layers.tables[table]
        summary.tables.append(
            TableSummary(
                table=table,
                changes_written=changes.total if changes else 0,
                events_expected=expected[table],
                events_captured=captured[table],
                rows_in_database=rows,
                soft_deleted=soft_deleted,
                bronze_rows=bronze,
                silver_live_rows=live,
                silver_hard_deleted=hard_deleted,
            )
        )
    return summary


@dataclass
class _AgentsRun:
    medallion: Any
    cache: CacheRound | None
    views: ViewsAnswer | None


async def _run_agents(
    settings: Settings, topics: list[str], timeout_s: float, progress: Progress
) -> _AgentsRun:
    """Run the worker's agents until the medallion offsets and the analytics positions
    reach every topic's end, flush the analytics, then do the cache round and ask the web
    views while they run; the worker then stops (its last flush included)."""
    runners: list[AnalyticsRunner] = []
    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_worker(
            settings, AGENTS, worker_id="demo", stop=stop, serve_metrics=False,
            on_analytics=runners.append,
        )
    )  # fmt: skip
    deadline = time.monotonic() + timeout_s
    consumer, admin = _clients(settings)
    cache: CacheRound | None = None
    views: ViewsAnswer | None = None
    try:
        group = f"{settings.kafka.consumer_group}-medallion"
        while True:
            _raise_if_failed(worker)
            ends = _partition_ends(consumer, admin, topics)
            stored = await stored_offsets(settings, group)
            medallion_done = all(stored.get(k, 0) >= end for k, end in ends.items() if end)
            analytics = runners[0] if runners else None
            if medallion_done and analytics is not None and not analytics.recovering:
                wanted = _partition_ends(consumer, admin, analytics_topics(settings))
                if all(analytics.positions.get(k, 0) >= end for k, end in wanted.items()):
                    await analytics.flush_now()
                    break
            if time.monotonic() > deadline:
                raise TransientError(
                    f"the agents did not catch up within {timeout_s:.0f} s "
                    "(see `bitvelocity status` and the worker log)"
                )
            await asyncio.sleep(0.5)
        progress("cache round: read a product, change its price, wait for the eviction")
        cache = await cache_round(settings)
        customer = await _some_customer(settings)
        if customer is not None:
            views = await ask_views(settings, customer)
    finally:
        consumer.close()
        stop.set()
        results = await worker
    return _AgentsRun(results["medallion"], cache, views)


def _raise_if_failed(task: asyncio.Task[Any]) -> None:
    if task.done():
        task.result()  # raises the worker's error
        raise TransientError("the worker stopped before the agents caught up")


async def _some_customer(settings: Settings) -> int | None:
    """The customer with the most orders in gold (for the web views' sample answer)."""
    connection = await connect(settings.postgres)
    try:
        value = await connection.fetchval(
            "SELECT customer_id FROM gold.customer_features "
            "ORDER BY lifetime_order_count DESC, customer_id LIMIT 1"
        )
        return None if value is None else int(value)
    finally:
        await connection.close()


def _partition_ends(
    consumer: Consumer, admin: AdminClient, topics: list[str]
) -> dict[tuple[str, int], int]:
    return partition_high_watermarks(consumer, admin, topics)


async def stored_offsets(settings: Settings, group: str) -> dict[tuple[str, int], int]:
    """``(topic, partition) -> next offset`` the medallion ``group`` committed in PostgreSQL."""
    connection = await connect(settings.postgres)
    try:
        rows = await connection.fetch(
            "SELECT topic, partition, next_offset FROM ops.consumer_offsets WHERE group_id = $1",
            group,
        )
        return {(r[0], r[1]): r[2] for r in rows}
    finally:
        await connection.close()


def _events_expected(result: LoadgenResult, table: str) -> int:
    changes = result.tables.get(table)
    return 0 if changes is None else changes.inserts + changes.updates + 2 * changes.deletes


def _end_offsets(consumer: Consumer, admin: AdminClient, topics: list[str]) -> dict[str, int]:
    """End offset per topic: the sum over its partitions."""
    ends = dict.fromkeys(topics, 0)
    for (topic, _partition), end in _partition_ends(consumer, admin, topics).items():
        ends[topic] += end
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


@dataclass
class _Layers:
    tables: dict[str, tuple[int, int, int, int, int]]
    dead_letters: int
    gold_current_facts: int
    quality_failures: int


async def _layer_counts(settings: Settings) -> _Layers:
    """Rows per layer, read with plain SQL (identifiers from our own table list)."""
    connection = await connect(settings.postgres)
    try:
        tables = {}
        for table in CAPTURED_TABLES:
            rows, soft = await connection.fetchrow(
                f"SELECT count(*), count(deleted_at) FROM public.{table}"  # noqa: S608
            ) or (0, 0)
            bronze = await connection.fetchval(f"SELECT count(*) FROM bronze.{table}")  # noqa: S608
            live, hard = await connection.fetchrow(
                f"SELECT count(*) FILTER (WHERE NOT hard_deleted), "  # noqa: S608
                f"count(*) FILTER (WHERE hard_deleted) FROM silver.{table}"
            ) or (0, 0)
            tables[table] = (int(rows), int(soft), int(bronze or 0), int(live), int(hard))
        return _Layers(
            tables=tables,
            dead_letters=int(
                await connection.fetchval(
                    "SELECT coalesce(sum(dead_letters), 0) FROM ops.sink_batches"
                )
                or 0
            ),
            gold_current_facts=int(
                await connection.fetchval("SELECT count(*) FROM gold.order_facts WHERE is_current")
                or 0
            ),
            quality_failures=int(
                await connection.fetchval(
                    "SELECT coalesce(sum(failed_count), 0) FROM ops.data_quality_results"
                )
                or 0
            ),
        )
    finally:
        await connection.close()
