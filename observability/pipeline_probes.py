"""Figures of pipelines with no per-batch hook of their own, published on ``/metrics``.

``probe_analytics``: records, freshness and lag of the analytics runner. ``probe_group_lag``:
the lag of pipelines whose positions are plain Kafka commits (the cache's agents), from the
group's committed offsets.

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

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from config.errors import TransientError
from config.settings import Settings
from observability.metrics import Metrics

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


#: Seconds a probe waits for Kafka: short, so a stopping worker never waits on a probe long.
PROBE_TIMEOUT_S = 1.0


def _ends(consumer: Consumer, admin: AdminClient, topics: list[str]) -> dict[tuple[str, int], int]:
    """High watermark of every partition of ``topics`` (those that exist), asked once."""
    try:
        metadata = admin.list_topics(timeout=PROBE_TIMEOUT_S).topics
        return {
            (topic, p): consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=PROBE_TIMEOUT_S
            )[1]
            for topic in topics
            if topic in metadata
            for p in metadata[topic].partitions
        }
    except KafkaException as exc:
        raise TransientError(f"watermarks of {', '.join(topics)}: {exc}") from exc


def pipeline_lag(positions: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]) -> int:
    """Records between the applied positions and the partitions' ends (never negative)."""
    return sum(max(0, end - positions.get(key, 0)) for key, end in ends.items())


async def probe_analytics(
    settings: Settings,
    runner: AnalyticsFigures,
    topics: list[str],
    metrics: Metrics,
    stop: asyncio.Event,
    interval_s: float = 1.0,
    lag_every: int = 5,
) -> None:
    """Publish the runner's records and freshness every ``interval_s``, its lag every
    ``lag_every`` of those (a watermark request per partition), until ``stop`` is set."""
    bootstrap = settings.kafka.bootstrap_servers
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bv-analytics-lag-probe",
         "enable.auto.commit": False}
    )  # fmt: skip
    admin = AdminClient({"bootstrap.servers": bootstrap})
    reported = 0
    ticks = 0
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
            ticks += 1
            consumed = runner.stats.consumed
            metrics.record_processed(PIPELINE, consumed - reported)
            reported = consumed
            newest = runner.newest_committed_at
            if newest is not None:
                metrics.record_committed_event_time(PIPELINE, newest)
            if ticks % lag_every != 1 and lag_every > 1:
                continue
            try:
                ends = await asyncio.to_thread(_ends, consumer, admin, topics)
            except TransientError:
                continue  # Kafka briefly away: the last lag figure stays
            metrics.set_pipeline_lag(PIPELINE, pipeline_lag(dict(runner.positions), ends))
    finally:
        await asyncio.to_thread(consumer.close)


def _committed(consumer: Consumer, ends: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """The group's committed offsets of ``ends``' partitions (without joining the group)."""
    asked = [TopicPartition(topic, partition) for topic, partition in ends]
    try:
        found = consumer.committed(asked, timeout=PROBE_TIMEOUT_S)
    except KafkaException as exc:
        raise TransientError(f"committed offsets unavailable: {exc}") from exc
    return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in found}


async def probe_group_lag(
    settings: Settings,
    groups: dict[str, tuple[str, list[str]]],
    metrics: Metrics,
    stop: asyncio.Event,
    interval_s: float = 5.0,
) -> None:
    """``pipeline -> (consumer group, topics)``: publish each pipeline's lag until ``stop``."""
    bootstrap = settings.kafka.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})
    consumers = {
        pipeline: Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        for pipeline, (group, _topics) in groups.items()
    }
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
            for pipeline, consumer in consumers.items():
                topics = groups[pipeline][1]
                try:
                    ends = await asyncio.to_thread(_ends, consumer, admin, topics)
                    committed = await asyncio.to_thread(_committed, consumer, ends)
                except TransientError:
                    continue
                metrics.set_pipeline_lag(pipeline, pipeline_lag(committed, ends))
    finally:
        for consumer in consumers.values():
            await asyncio.to_thread(consumer.close)
