"""The medallion sink's upkeep jobs and their schedule (pure: fake clock, no database)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
from prometheus_client import CollectorRegistry

from agents.medallion_upkeep import BatchLineage, lag_report
from config.errors import TransientError
from lineage.openlineage import Dataset
from observability.lag import PartitionKey, Watermarks
from observability.metrics import Metrics
from streams.periodic import Periodic


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_periodic_job_runs_at_most_once_per_interval() -> None:
    clock, runs = FakeClock(), []

    async def job() -> None:
        runs.append(clock.now)

    periodic = Periodic(5.0, job, clock=clock)
    assert await periodic.tick()  # due at once
    clock.now += 4.9
    assert not await periodic.tick()
    clock.now += 0.1
    assert await periodic.tick()
    assert runs == [1000.0, 1005.0]
    assert periodic.runs == 2


async def test_a_job_not_due_at_first_tick_waits_one_interval() -> None:
    clock, runs = FakeClock(), []

    async def job() -> None:
        runs.append(clock.now)

    periodic = Periodic(60.0, job, clock=clock, run_at_first_tick=False)
    assert not await periodic.tick()
    clock.now += 60
    assert await periodic.tick()
    assert runs == [1060.0]


async def test_a_detached_job_lets_the_loop_go_on_and_is_not_started_twice() -> None:
    clock, release, runs = FakeClock(), asyncio.Event(), []

    async def slow_job() -> None:  # a lag reading waiting on a slow broker
        runs.append(clock.now)
        await release.wait()

    periodic = Periodic(5.0, slow_job, clock=clock, detached=True)
    assert await asyncio.wait_for(periodic.tick(), timeout=1)  # started, not awaited
    await asyncio.sleep(0)
    assert runs == [1000.0]
    clock.now += 10
    assert not await periodic.tick()  # due, but the first run is still going
    release.set()
    await periodic.settle()
    assert periodic.runs == 1
    assert await periodic.tick()  # the next run starts once the first ended
    await periodic.settle()
    assert runs == [1000.0, 1010.0]


async def test_a_detached_job_error_surfaces_at_the_next_tick() -> None:
    clock = FakeClock()

    async def failing() -> None:
        raise RuntimeError("job failed")

    periodic = Periodic(5.0, failing, clock=clock, detached=True)
    assert await periodic.tick()
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="job failed"):
        await periodic.tick()
    clock.now += 5
    assert await periodic.tick()  # runs again: the error was reported once
    await periodic.settle()  # logged, not raised, at stop


def _lag(metrics: Metrics, pipeline: str) -> float | None:
    return metrics.registry.get_sample_value("bv_pipeline_lag_records", {"pipeline": pipeline})


async def test_the_lag_report_publishes_high_watermark_minus_committed() -> None:
    metrics = Metrics(CollectorRegistry())
    committed = {PartitionKey("t", 0): 90, PartitionKey("t", 1): 10}

    async def watermarks(partitions: list[PartitionKey]) -> Mapping[PartitionKey, Watermarks]:
        return {PartitionKey("t", 0): Watermarks(0, 100), PartitionKey("t", 1): Watermarks(0, 10)}

    job = lag_report(lambda: committed, watermarks, metrics, "medallion")
    assert await job.tick()
    await job.settle()  # detached: the reading runs beside the batches
    assert _lag(metrics, "medallion") == 10


async def test_the_lag_report_skips_a_reading_the_broker_cannot_give() -> None:
    metrics = Metrics(CollectorRegistry())

    async def unavailable(partitions: list[PartitionKey]) -> Mapping[PartitionKey, Watermarks]:
        raise TransientError("broker away")

    job = lag_report(lambda: {PartitionKey("t", 0): 1}, unavailable, metrics, "medallion")
    assert await job.tick()
    await job.settle()
    assert await job.tick() is False  # ran, logged, raised nothing; not due again yet
    assert _lag(metrics, "medallion") is None


def test_batch_lineage_names_the_tables_a_topic_feeds() -> None:
    lineage = BatchLineage(None, "k:9092", {"bitvelocity.events.telemetry": "telemetry"})  # type: ignore[arg-type]
    assert lineage.outputs("bitvelocity.public.orders") == (
        "orders",
        [
            Dataset("postgres", "bronze.orders"),
            Dataset("postgres", "silver.orders"),
            Dataset("postgres", "gold.order_facts"),
        ],
    )
    assert lineage.outputs("bitvelocity.public.payments")[1] == [
        Dataset("postgres", "bronze.payments"),
        Dataset("postgres", "silver.payments"),
    ]
    assert lineage.outputs("bitvelocity.events.telemetry") == (
        "telemetry",
        [Dataset("postgres", "bronze.telemetry")],
    )
