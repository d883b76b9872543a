"""The analytics pipeline's figures on ``/metrics``: records, freshness and lag.

The analytics runner drives its own consumer and flushes on a timer, with no per-batch hook
to time; this probe reads what the runner already keeps (records consumed, positions
applied, the newest source commit time applied) every few seconds and publishes them under
``pipeline="analytics"``, so ``bitvelocity status`` and the dashboard show the pipeline like
the others without touching its consumer loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Protocol

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from config.errors import TransientError
from config.settings import Settings
from observability.metrics import Metrics
from streams.capture_admin import partition_high_watermarks

PIPELINE = "analytics"


class _Stats(Protocol):
    @property
    def consumed(self) -> int: ...


class AnalyticsFigures(Protocol):
    """What the probe reads of ``agents.analytics.AnalyticsRunner``."""

    @property
    def stats(self) -> _Stats: ...
    @property
    def positions(self) -> dict[tuple[str, int], int]: ...
    @property
    def newest_committed_at(self) -> datetime | None: ...


def pipeline_lag(positions: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]) -> int:
    """Records between the applied positions and the partitions' ends (never negative)."""
    return sum(max(0, end - positions.get(key, 0)) for key, end in ends.items())


async def probe_analytics(
    settings: Settings,
    runner: AnalyticsFigures,
    topics: list[str],
    metrics: Metrics,
    stop: asyncio.Event,
    interval_s: float = 5.0,
) -> None:
    """Publish the runner's figures every ``interval_s`` until ``stop`` is set."""
    bootstrap = settings.kafka.bootstrap_servers
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bv-analytics-lag-probe",
         "enable.auto.commit": False}
    )  # fmt: skip
    admin = AdminClient({"bootstrap.servers": bootstrap})
    reported = 0
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
            consumed = runner.stats.consumed
            metrics.record_processed(PIPELINE, consumed - reported)
            reported = consumed
            newest = runner.newest_committed_at
            if newest is not None:
                metrics.record_committed_event_time(PIPELINE, newest)
            try:
                ends = await asyncio.to_thread(partition_high_watermarks, consumer, admin, topics)
            except TransientError:
                continue  # Kafka briefly away: the last lag figure stays
            metrics.set_pipeline_lag(PIPELINE, pipeline_lag(dict(runner.positions), ends))
    finally:
        await asyncio.to_thread(consumer.close)
