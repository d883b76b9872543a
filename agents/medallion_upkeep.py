"""The medallion sink's upkeep between batches: each a small job on its own schedule.

- ``quality_sweep``: settles REFERENCE checks parked by earlier batches.
- ``daily_sales_refresh``: keeps ``gold.daily_sales`` fresh without blocking readers.
- ``lag_report``: records not yet committed per owned partition (a gauge).
A failed run is logged and tried again at the next interval: nothing is lost meanwhile.
``BatchLineage`` emits the OpenLineage events of each committed batch.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

import asyncpg

from config.errors import TransientError
from lineage.openlineage import Dataset, LineagePublisher, batch_events
from observability.lag import PartitionKey, Watermarks, compute_lag
from observability.metrics import Metrics
from sinks.postgres.batch import PlannedBatch
from sinks.postgres.connection import DB_ERRORS
from sinks.postgres.medallion import BatchOutcome, QualityGate
from sinks.postgres.warehouse import refresh_daily_sales
from streams.periodic import Periodic

log = logging.getLogger("bitvelocity.medallion")
#: The connection a job runs on, and what to call when it failed (drop it).
Connect = Callable[[], Awaitable[asyncpg.Connection]]
Drop = Callable[[], None]
#: The committed next offset of each owned partition, and the high watermarks reader.
Committed = Callable[[], Mapping[PartitionKey, int]]
ReadWatermarks = Callable[[list[PartitionKey]], Awaitable[Mapping[PartitionKey, Watermarks]]]


def quality_sweep(
    quality: QualityGate, connect: Connect, drop: Drop, *, interval_s: float = 2.0
) -> Periodic:
    async def sweep() -> None:
        try:
            connection = await connect()
            async with connection.transaction():
                await quality.sweep(connection)
        except DB_ERRORS as exc:
            log.warning("quality sweep skipped: %s", exc)
            drop()

    return Periodic(interval_s, sweep)


def daily_sales_refresh(connect: Connect, drop: Drop, *, interval_s: float) -> Periodic:
    async def refresh() -> None:
        try:
            await refresh_daily_sales(await connect())
        except DB_ERRORS as exc:
            log.warning("daily_sales refresh skipped: %s", exc)
            drop()

    return Periodic(interval_s, refresh, run_at_first_tick=False)


def lag_report(
    committed: Committed,
    watermarks: ReadWatermarks,
    metrics: Metrics,
    pipeline: str,
    *,
    interval_s: float = 5.0,
) -> Periodic:
    async def report() -> None:
        positions = dict(committed())
        if not positions:
            return
        try:
            marks = await watermarks(list(positions))
        except TransientError as exc:
            log.debug("lag not measured: %s", exc)
            return
        metrics.set_lag(compute_lag(positions, dict(marks)), pipeline)

    # Detached: a broker slow to answer must not hold up the next batch.
    return Periodic(interval_s, report, detached=True)


class BatchLineage:
    """The START/COMPLETE events of each committed batch, from topic to its tables."""

    def __init__(
        self, publisher: LineagePublisher, bootstrap_servers: str, event_tables: Mapping[str, str]
    ) -> None:
        self._publisher = publisher
        self._kafka = f"kafka://{bootstrap_servers}"
        #: Event topic -> its bronze table (event topics land in bronze only).
        self._event_tables = event_tables

    def outputs(self, topic: str) -> tuple[str, list[Dataset]]:
        """The table a topic feeds and the datasets a batch of it writes."""
        event_table = self._event_tables.get(topic)
        if event_table is not None:
            return event_table, [Dataset("postgres", f"bronze.{event_table}")]
        table = topic.rsplit(".", 1)[-1]
        outputs = [Dataset("postgres", f"bronze.{table}"), Dataset("postgres", f"silver.{table}")]
        if table == "orders":
            outputs.append(Dataset("postgres", "gold.order_facts"))
        return table, outputs

    def emit(self, plan: PlannedBatch, outcome: BatchOutcome, started: datetime) -> None:
        table, outputs = self.outputs(plan.topic)
        events = batch_events(
            job=f"medallion.{table}",
            batch_key=f"{plan.topic}/{plan.partition}/{plan.first_offset}-{plan.last_offset}",
            started=started,
            finished=datetime.now(UTC),
            inputs=[Dataset(self._kafka, plan.topic)],
            outputs=outputs,
            counts={
                "consumed": plan.consumed,
                "bronze_rows": outcome.bronze_rows,
                "silver_rows": outcome.silver_rows,
                "dead_letters": outcome.dead_letters,
            },
        )
        self._publisher.publish(events, key=plan.topic)

    def close(self) -> None:
        self._publisher.close()
