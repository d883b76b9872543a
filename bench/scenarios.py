"""Our scenarios: the raw baselines, the medallion sink, the analytics agents, both together.

Each measures on the preloaded input of the run (``BenchContext``), from offset 0 with a
fresh consumer group and, where it writes, a fresh warehouse database. Rates run from the
partition assignment to the last commit (group join is startup, not throughput); CPU is
this process's CPU seconds over that span per 1,000 records; peak RSS is this process's
high-water mark over it (reset first, Linux); Redis round trips are pipelines sent per
input record.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.analytics import AnalyticsRunner
from bench.harness import BenchContext, Row, delete_topics_named, scenario
from bench.pipeline_env import delete_feature_keys
from bench.sink import (
    REPEATS,
    SinkRun,
    _reset_peak_rss,
    _rss_mb,
    b0_raw_consumer,
    b1_copy,
    b2_and_decode_rates,
    b3_decode_and_copy,
    bronze_rows,
    check_exactly_once,
    decode_records,
    run_sink,
)
from config.settings import Settings
from serdes.avro import AvroCodec
from serdes.debezium import DebeziumAvroDecoder
from serdes.registry import RegistryClient
from streams.runtime import ConsumerSpec, PartitionId

#: B1, B2 and our decode are per-record costs: on the first records of the input (all of
#: a smaller one) they give stable rates without spending the run's budget on decoding.
SAMPLE = 50_000


@scenario("baselines", "B0 raw consume(), B1 asyncpg COPY, B2 fastavro, our decode")
async def baselines(context: BenchContext) -> list[Row]:
    marks, settings = context.cdc.marks, context.settings
    total = context.data_records
    b0 = b0_raw_consumer(context.bootstrap, marks, context.group("b0"))
    sample = context.records[:SAMPLE]
    registry = RegistryClient(settings.registry)
    try:
        codec = AvroCodec(registry)
        decoder = DebeziumAvroDecoder(codec)
        consumed = decode_records(decoder, sample)
        b2, decode_rate, values = b2_and_decode_rates(codec, decoder, sample)
        b3_database = await context.warehouses.fresh("b3")
        b3_settings = settings.model_copy(
            update={"postgres": settings.postgres.model_copy(update={"database": b3_database})}
        )
        b3 = await b3_decode_and_copy(b3_settings, codec, sample, context.options.batch_max_records)
    finally:
        registry.close()
    rows = bronze_rows(consumed, f"postgres.{settings.postgres.database}")
    del consumed
    database = await context.warehouses.fresh("b1")  # B1's table is created inside it
    b1_settings = settings.model_copy(
        update={"postgres": settings.postgres.model_copy(update={"database": database})}
    )
    b1 = await b1_copy(b1_settings, rows, context.options.batch_max_records)
    best = f"best of {REPEATS}" + (f", first {SAMPLE:,} records" if total > SAMPLE else "")
    return [
        Row("b0", "B0 raw confluent-kafka consume()", b0, records=total, note=f"best of {REPEATS}"),
        Row("b1", "B1 asyncpg COPY, unindexed table", b1, "rows/s", len(rows), note=best),
        Row("b2", "B2 fastavro schemaless_reader", b2, records=values, note=best),
        Row("b3", "B3 fastavro + asyncpg COPY, one process", b3, records=values, note=best),
        Row(
            "decode",
            "our decode (framing, envelope, types)",
            decode_rate,
            records=values,
            figures={"ratio_to_b2": round(decode_rate / b2, 4)},
            note=f"{decode_rate / b2:.2f} x B2",
        ),
    ]


def _sink_row(key: str, label: str, run: SinkRun, **figures: Any) -> Row:
    return Row(
        key,
        label,
        run.records_per_s,
        records=run.records,
        seconds=run.seconds,
        figures={
            "cpu_s_per_1k_records": round(run.cpu_s_per_1k, 4),
            "peak_rss_mb": run.peak_rss_mb,
            "rss_before_mb": run.rss_before_mb,
            "startup_s": round(run.startup_s, 2),
            "batches": run.batches,
            **figures,
        },
        note=f"batch {run.batch_max_records}, {run.records / max(run.batches, 1):,.0f}/batch",
    )


@scenario("sink", "our bronze+silver sink (MedallionSink), exactly once")
async def sink(context: BenchContext) -> list[Row]:
    database = await context.fresh_warehouse("sink")
    run = await run_sink(
        context.settings,
        database=database,
        topics=context.topics,
        group=context.group("sink"),
        expected=context.cdc.marks,
        timeout_s=context.options.phase_timeout_s,
    )
    await check_exactly_once(context.settings, database, context.data_records, context.data_records)
    return [_sink_row("sink", "ours: bronze+silver sink", run)]


# -- analytics --------------------------------------------------------------------------------
@dataclass
class AnalyticsRun:
    records: int
    assigned_at: float
    finished_at: float
    cpu_s: float
    rss_before_mb: float
    peak_rss_mb: float
    round_trips: int
    hourly_rows: int
    feature_rows: int

    @property
    def seconds(self) -> float:
        return self.finished_at - self.assigned_at


class _TimedRunner(AnalyticsRunner):
    """The real runner, plus when its partitions were first assigned."""

    assigned_at: float | None = None

    def consumer_spec(self) -> ConsumerSpec:
        # A bench run is one instance that ends: as a static member it would keep the group
        # alive for a session timeout after closing, so the run could not delete it.
        return dataclasses.replace(super().consumer_spec(), static_member_id=None)

    def _start_positions(self, partitions: list[PartitionId]) -> dict[PartitionId, int]:
        if partitions and self.assigned_at is None:
            self.assigned_at = time.perf_counter()
        return super()._start_positions(partitions)


def analytics_settings(context: BenchContext, database: str, label: str) -> Settings:
    """The run's settings with its own output topics, Redis prefix and warehouse."""
    base = context.settings
    prefix = f"{base.topics.cdc_prefix}-{label}"
    state_dir = Path(tempfile.mkdtemp(prefix=f"bv-bench-{label}-"))
    context.cleanups.append(lambda: shutil.rmtree(state_dir, ignore_errors=True))
    return base.model_copy(
        update={
            "postgres": base.postgres.model_copy(update={"database": database}),
            "topics": base.topics.model_copy(
                update={
                    "hourly_revenue": f"{prefix}-hourly-revenue",
                    "customer_features": f"{prefix}-customer-features",
                    "late_events": f"{prefix}-late-events",
                    "analytics_state": f"{prefix}-analytics-state",
                }
            ),
            "features": base.features.model_copy(
                update={
                    "redis_prefix": f"bv:bench:{context.run_id}:{label}:features:",
                    "state_dir": state_dir,
                }
            ),
        }
    )


def _forget_outputs(context: BenchContext, settings: Settings) -> None:
    delete_topics_named(context.bootstrap, f"{context.settings.topics.cdc_prefix}-")
    with RegistryClient(settings.registry) as registry:
        for topic in (settings.topics.hourly_revenue, settings.topics.customer_features):
            with contextlib.suppress(Exception):
                registry.delete_subject(f"{topic}-value")


async def run_analytics(
    context: BenchContext, settings: Settings, group: str, timeout_s: float
) -> AnalyticsRun:
    """The analytics runner over the input from offset 0, as a live worker catching up.

    ``recovering`` is switched off: a restarted worker replays its state first and writes
    once at the end; here the records are new work, so it flushes every ``flush_interval``.
    """
    runner = _TimedRunner(settings, group_id=group)
    runner.recovering = False
    stop = asyncio.Event()
    marks = context.cdc.marks
    _reset_peak_rss()
    rss_before = _rss_mb("VmRSS")
    cpu_before = time.process_time()
    task = asyncio.create_task(runner.run(stop))
    deadline = time.monotonic() + timeout_s
    try:
        while not all(runner.positions.get(k, 0) >= v for k, v in marks.items()):
            if task.done():
                task.result()
                raise RuntimeError("the analytics runner stopped before the end")
            if time.monotonic() > deadline:
                raise TimeoutError(f"analytics did not read every record in {timeout_s} s")
            await asyncio.sleep(0.02)
        await runner.flush_now()
        finished = time.perf_counter()
        cpu = time.process_time() - cpu_before
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)
    assert runner.assigned_at is not None
    assert runner.sinks is not None
    # Includes the one SCRIPT LOAD at start: every Redis round trip the agents made.
    trips = runner.sinks.redis.round_trips
    return AnalyticsRun(
        records=context.data_records,
        assigned_at=runner.assigned_at,
        finished_at=finished,
        cpu_s=cpu,
        rss_before_mb=round(rss_before, 1),
        peak_rss_mb=round(_rss_mb("VmHWM"), 1),
        round_trips=trips,
        hourly_rows=runner.stats.hourly_rows,
        feature_rows=runner.stats.feature_rows,
    )


def _analytics_row(key: str, label: str, run: AnalyticsRun) -> Row:
    return Row(
        key,
        label,
        run.records / run.seconds,
        records=run.records,
        seconds=run.seconds,
        figures={
            "cpu_s_per_1k_records": round(run.cpu_s / run.records * 1000, 4),
            "peak_rss_mb": run.peak_rss_mb,
            "rss_before_mb": run.rss_before_mb,
            "redis_round_trips_per_event": round(run.round_trips / run.records, 5),
            "hourly_rows": run.hourly_rows,
            "feature_rows": run.feature_rows,
        },
        note=f"{run.hourly_rows:,} hourly + {run.feature_rows:,} feature rows written",
    )


@scenario("analytics", "our revenue+features agents (agents/analytics.py runner)")
async def analytics(context: BenchContext) -> list[Row]:
    label = f"an{secrets.token_hex(2)}"
    database = await context.fresh_warehouse(label)
    settings = analytics_settings(context, database, label)
    try:
        run = await run_analytics(
            context, settings, context.group(label), context.options.phase_timeout_s
        )
    finally:
        await delete_feature_keys(settings)
        _forget_outputs(context, settings)
    return [_analytics_row("analytics", "ours: revenue+features agents", run)]


@scenario("pipeline", "our full pipeline: sink and analytics in one process, same input")
async def pipeline(context: BenchContext) -> list[Row]:
    label = f"pl{secrets.token_hex(2)}"
    database = await context.fresh_warehouse(label)
    settings = analytics_settings(context, database, label)
    timeout = context.options.phase_timeout_s
    started = time.perf_counter()
    cpu_before = time.process_time()
    try:
        sink_run, analytics_run = await asyncio.gather(
            run_sink(
                context.settings,
                database=database,
                topics=context.topics,
                group=context.group(f"{label}-sink"),
                expected=context.cdc.marks,
                timeout_s=timeout,
            ),
            run_analytics(context, settings, context.group(f"{label}-an"), timeout),
        )
    finally:
        await delete_feature_keys(settings)
        _forget_outputs(context, settings)
    cpu = time.process_time() - cpu_before
    sink_assigned = started + sink_run.startup_s
    begin = min(sink_assigned, analytics_run.assigned_at)
    end = max(sink_assigned + sink_run.seconds, analytics_run.finished_at)
    records = context.data_records
    return [
        Row(
            "pipeline",
            "ours: full pipeline (sink + analytics)",
            records / (end - begin),
            records=records,
            seconds=end - begin,
            figures={
                "cpu_s_per_1k_records": round(cpu / records * 1000, 4),
                "peak_rss_mb": max(sink_run.peak_rss_mb, analytics_run.peak_rss_mb),
                "rss_before_mb": min(sink_run.rss_before_mb, analytics_run.rss_before_mb),
                "redis_round_trips_per_event": round(analytics_run.round_trips / records, 5),
                "sink_records_per_s": round(sink_run.records_per_s),
                "analytics_records_per_s": round(records / analytics_run.seconds),
            },
            note="one process, one event loop; CPU includes group joins",
        )
    ]
