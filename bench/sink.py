"""Throughput and latency of the medallion sink against raw baselines, on the same records.

Run: ``python -m bench.sink [--changes N] [--json PATH]`` (or ``bitvelocity bench --scenario
sink-detail``). One run builds an isolated pipeline (own OLTP database, Debezium connector, slot,
topics: ``bench.pipeline_env``), lets the seeded load generator write until the CDC topics
hold N records, waits until Debezium published them all, then measures on those records
(DESIGN.md section 12):

- B0: a raw confluent-kafka consumer, batch ``consume()``, no processing (records/s);
- B1: asyncpg ``copy_records_to_table`` of the same bronze rows, in batches of the sink's
  size, into an unindexed, unpartitioned table with a jsonb column (rows/s);
- B2: fastavro ``schemaless_reader`` over the same value bodies (records/s), the reader
  call of ``bench/decode.py``; next to it our full decode of the same records;
- ours: ``MedallionSink`` with the real quality gate and writer, from offset 0 with a fresh
  consumer group and a fresh warehouse database, until it committed every record:
  records/s from the partition assignment to the last commit, CPU seconds per 1k records
  and peak RSS of this process over that span; optionally again for other batch sizes;
- latency: the same records replayed by a producer process at a fraction (default half) of
  that throughput into fresh topics while another fresh sink consumes them; each record's
  latency is its batch's commit time minus the record's Kafka timestamp.

The machine is shared, so the figures that matter are ratios against baselines measured in
the same run. Not a test: no figure is asserted; the run fails only when a sink lost or
duplicated records. Everything it creates is removed afterwards, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import math
import multiprocessing
import platform
import resource
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import asyncpg
import confluent_kafka
import fastavro
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table

from admin.capture import delete_topics_with_prefix
from agents.medallion import MedallionSink
from bench.pipeline_env import (
    BENCH_NAMES,
    SinkEnv,
    delete_consumer_groups,
    eventually,
    expected_records,
    high_watermarks,
    pipeline_environment,
)
from config.settings import Settings, load_settings
from observability.metrics import Metrics, NullMetrics
from oltp.loadgen import LoadgenConfig, LoadgenResult, run_loadgen
from serdes.avro import AvroCodec
from serdes.debezium import DebeziumAvroDecoder
from serdes.framing import detect
from serdes.registry import RegistryClient
from sinks.postgres.batch import BRONZE_COLUMNS, ConsumedRecord, plan_batch
from sinks.postgres.connection import connect
from sinks.postgres.medallion import BatchOutcome
from sinks.postgres.quality.gate import RulesQualityGate
from sinks.postgres.tables import TABLES
from sinks.postgres.warehouse import migrate_warehouse
from streams.runtime import PartitionId

RawHeaders = list[tuple[str, bytes | str | None]]
RESULTS = Path(__file__).resolve().parent / "results" / "sink.json"
TARGET_RECORDS_PER_S = 20_000
TARGET_RATIO_B0 = 0.15
TARGET_P99_MS = 500.0
TARGET_RSS_MB = 400.0
REPEATS = 3  # baselines: best of, like bench/decode.py
LOADGEN_CHUNK = 1_000  # business transactions per load generator call
B1_TABLE = "bench_b1_bronze"
B3_TABLE = "bench_b3_landed"
log = logging.getLogger("bitvelocity.bench.sink")
console = Console(width=150)  # a table, not wrapped at 80 columns when piped


@dataclass(frozen=True)
class BenchOptions:
    changes: int = 20_000
    batch_max_records: int = 5_000  # the production default (BV_SINK__BATCH_MAX_RECORDS)
    sweep: tuple[int, ...] = (500, 2_000)
    repeats: int = 2  # runs at batch_max_records; the best counts, as for the baselines
    latency_fraction: float = 0.5
    latency_rate: float | None = None  # records/s; fixed, to compare two builds at one rate
    latency_min_s: float = 10.0
    metrics_pairs: int = 2  # alternating runs with metrics on and off (DESIGN: overhead < 5 %)
    seed: int = 42
    phase_timeout_s: float = 180.0
    json_path: Path = RESULTS


@dataclass(frozen=True, slots=True)
class CapturedRecord:
    """One CDC record as Debezium published it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


@dataclass
class SinkRun:
    """One sink run over all records, from a fresh group and a fresh warehouse database."""

    batch_max_records: int
    records: int
    seconds: float  # partition assignment -> last commit
    startup_s: float  # run() -> partition assignment (group join, claims)
    cpu_s: float
    rss_before_mb: float  # this process when the sink started (holds the benchmark's input)
    peak_rss_mb: float  # the peak while the sink ran
    batches: int
    quality_sweep_s: float
    commits: list[tuple[float, str, int, int]] = field(default_factory=list, repr=False)

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds

    @property
    def cpu_s_per_1k(self) -> float:
        return self.cpu_s / self.records * 1000

    def summary(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "commits"}
        data["records_per_s"] = round(self.records_per_s)
        data["cpu_s_per_1k_records"] = round(self.cpu_s_per_1k, 4)
        data["mean_batch_records"] = round(self.records / max(self.batches, 1), 1)
        return data


class _TimedSink(MedallionSink):
    """The real sink, plus when its partitions were assigned and when each batch committed."""

    def __init__(
        self,
        settings: Settings,
        *,
        expected: dict[tuple[str, int], int],
        **kwargs: Any,
    ) -> None:
        super().__init__(
            settings,
            RulesQualityGate(settings),
            on_committed=self._committed,
            on_assigned=self._assigned,
            **kwargs,
        )
        self.expected = expected
        self.assigned_at: tuple[float, float] | None = None  # perf_counter, process_time
        self.finished_at: tuple[float, float] | None = None
        self.commits: list[tuple[float, str, int, int]] = []  # wall time, topic, part, next
        self.done = asyncio.Event()
        self._remaining = {key for key, high in expected.items() if high > 0}

    def _assigned(self, _partitions: list[PartitionId]) -> None:
        if self.assigned_at is None:
            self.assigned_at = (time.perf_counter(), time.process_time())

    @property
    def sweep_s(self) -> float:
        """Wall time in the periodic quality sweep (not in any batch)."""
        return self.quality_sweep.seconds

    def _committed(self, outcome: BatchOutcome) -> None:
        claim = outcome.claim
        self.commits.append((time.time(), claim.topic, claim.partition, claim.next_offset))
        key = (claim.topic, claim.partition)
        if key in self._remaining and claim.next_offset >= self.expected[key]:
            self._remaining.discard(key)
            if not self._remaining:
                self.finished_at = (time.perf_counter(), time.process_time())
                self.done.set()


# -- preparing the input -------------------------------------------------------------------------
async def generate_load(env: SinkEnv, options: BenchOptions) -> tuple[int, float]:
    """Run the load generator until it produced ``options.changes`` Kafka records."""
    started = time.monotonic()
    results: list[LoadgenResult] = []
    chunk = 0
    while expected_records(*results) < options.changes:
        if time.monotonic() - started > options.phase_timeout_s:
            raise TimeoutError(
                f"the load generator made {expected_records(*results)} of {options.changes} "
                f"records in {options.phase_timeout_s:.0f} s: lower --changes"
            )
        config = LoadgenConfig(seed=options.seed + chunk, transactions=LOADGEN_CHUNK)
        results.append(await run_loadgen(env.settings, config))
        chunk += 1
    expected = expected_records(*results)

    async def published() -> bool:
        return sum(high_watermarks(env).values()) >= expected

    await eventually(published, timeout_s=options.phase_timeout_s, what=f"{expected} on Kafka")
    return expected, time.monotonic() - started


def read_records(
    bootstrap: str, marks: dict[tuple[str, int], int], group: str
) -> list[CapturedRecord]:
    """Every record below the high watermarks, in partition order (assigned, no membership)."""
    consumer = Consumer(_reader_config(bootstrap, group))
    total = sum(marks.values())
    records: list[CapturedRecord] = []
    deadline = time.monotonic() + 120
    try:
        consumer.assign([TopicPartition(t, p, 0) for (t, p), high in marks.items() if high])
        while len(records) < total and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=5000, timeout=1.0):
                if message.error() is not None:
                    continue
                headers = tuple(
                    (name, value if isinstance(value, bytes) else (value or "").encode())
                    for name, value in cast(RawHeaders, message.headers() or [])
                )
                records.append(
                    CapturedRecord(
                        message.topic() or "",
                        message.partition() or 0,
                        message.offset() or 0,
                        message.timestamp()[1],
                        message.key(),
                        message.value(),
                        headers,
                    )
                )
    finally:
        consumer.close()
    if len(records) != total:
        raise RuntimeError(f"read {len(records)} of {total} CDC records back from Kafka")
    return records


def _reader_config(bootstrap: str, group: str) -> dict[str, Any]:
    # The consume settings of the sink (agents/medallion.py), without a group membership.
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "fetch.wait.max.ms": 100,
    }


# -- baselines -------------------------------------------------------------------------------------
def b0_raw_consumer(bootstrap: str, marks: dict[tuple[str, int], int], group: str) -> float:
    """B0: records/s of a bare batch ``consume()`` over every record (best of REPEATS)."""
    total = sum(marks.values())
    best = math.inf
    for _ in range(REPEATS):
        consumer = Consumer(_reader_config(bootstrap, group))
        try:
            consumer.list_topics(timeout=10)  # connected before the clock starts, as the sink is
            started = time.perf_counter()
            consumer.assign([TopicPartition(t, p, 0) for (t, p), high in marks.items() if high])
            count = 0
            deadline = time.monotonic() + 60
            while count < total and time.monotonic() < deadline:
                # Never more than what is left: consume() would wait out its timeout for it.
                wanted = min(5000, total - count)
                for message in consumer.consume(num_messages=wanted, timeout=1.0):
                    if message.error() is None:
                        count += 1
            elapsed = time.perf_counter() - started
        finally:
            consumer.close()
        if count != total:
            raise RuntimeError(f"B0 read {count} of {total} records")
        best = min(best, elapsed)
    return total / best


def decode_records(
    decoder: DebeziumAvroDecoder, records: Sequence[CapturedRecord]
) -> list[ConsumedRecord]:
    return [
        ConsumedRecord(r.topic, r.partition, r.offset, decoder.decode(r.key, r.value, r.headers))
        for r in records
    ]


def b2_and_decode_rates(
    codec: AvroCodec, decoder: DebeziumAvroDecoder, records: Sequence[CapturedRecord]
) -> tuple[float, float, int]:
    """B2 (fastavro over the value bodies) and our full decode of the same records, per s."""
    values = [r for r in records if r.value is not None]
    bodies = []
    for record in values:
        assert record.value is not None
        framed = detect(record.value, record.headers)
        bodies.append((framed.body, codec.writer_schema(framed.schema_id, framed.id_kind)))
    reader = fastavro.schemaless_reader

    def raw() -> None:
        for body, schema in bodies:
            reader(io.BytesIO(body), schema, None)

    def ours() -> None:
        for record in values:
            decoder.decode(record.key, record.value, record.headers)

    raw_s, ours_s = math.inf, math.inf
    for _ in range(REPEATS):  # interleaved, so drift of the machine's load hits both
        raw_s = min(raw_s, _seconds(raw))
        ours_s = min(ours_s, _seconds(ours))
    return len(values) / raw_s, len(values) / ours_s, len(values)


def _seconds(function: Callable[[], None]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def bronze_rows(consumed: Sequence[ConsumedRecord], source_system: str) -> list[tuple[Any, ...]]:
    """The bronze rows the sink would write for ``consumed`` (planned per partition)."""
    by_partition: dict[tuple[str, int], list[ConsumedRecord]] = defaultdict(list)
    for record in consumed:
        by_partition[(record.topic, record.partition)].append(record)
    rows: list[tuple[Any, ...]] = []
    for records in by_partition.values():
        for table_rows in plan_batch(records, source_system).bronze.values():
            rows.extend(table_rows)
    return rows


async def b1_copy(settings: Settings, rows: Sequence[tuple[Any, ...]], batch: int) -> float:
    """B1: rows/s of asyncpg COPY of ``rows`` into an unindexed, unpartitioned table."""
    connection = await connect(settings.postgres)
    try:
        # LIKE copies columns, NOT NULL and defaults only: no index, no partitioning.
        await connection.execute(f"CREATE TABLE {B1_TABLE} (LIKE bronze.orders INCLUDING DEFAULTS)")
        best = math.inf
        for _ in range(REPEATS):
            await connection.execute(f"TRUNCATE {B1_TABLE}")
            started = time.perf_counter()
            for start in range(0, len(rows), batch):
                await connection.copy_records_to_table(
                    B1_TABLE, records=rows[start : start + batch], columns=BRONZE_COLUMNS
                )
            best = min(best, time.perf_counter() - started)
        return len(rows) / best
    finally:
        await connection.close()


async def b3_decode_and_copy(
    settings: Settings,
    codec: AvroCodec,
    records: Sequence[CapturedRecord],
    batch: int,
) -> float:
    """B3: records/s of raw fastavro decode plus asyncpg COPY of the same records, one
    process, batch after batch: the one-core ceiling for landing these bytes from Python
    (origin columns plus the decoded value as jsonb, into an unindexed table)."""
    bodies = []
    for record in records:
        if record.value is None:
            continue
        framed = detect(record.value, record.headers)
        schema = codec.writer_schema(framed.schema_id, framed.id_kind)
        bodies.append((record.topic, record.partition, record.offset, framed.body, schema))
    reader, dumps = fastavro.schemaless_reader, orjson.dumps
    connection = await connect(settings.postgres)
    try:
        await connection.execute(
            f"CREATE TABLE {B3_TABLE} (source_topic text, source_partition int, "
            "source_offset bigint, raw_payload jsonb)"
        )
        best = math.inf
        for _ in range(REPEATS):
            await connection.execute(f"TRUNCATE {B3_TABLE}")
            started = time.perf_counter()
            for start in range(0, len(bodies), batch):
                rows = [
                    (topic, partition, offset, dumps(reader(io.BytesIO(body), schema, None),
                                                     default=str).decode())
                    for topic, partition, offset, body, schema in bodies[start : start + batch]
                ]  # fmt: skip
                await connection.copy_records_to_table(B3_TABLE, records=rows)
            best = min(best, time.perf_counter() - started)
        return len(bodies) / best
    finally:
        await connection.close()


# -- our sink --------------------------------------------------------------------------------
def _reset_peak_rss() -> bool:
    """Reset this process's VmHWM (Linux >= 4.0), so the peak is the sink's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _rss_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process; ``ru_maxrss`` without /proc."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Warehouses:
    """Fresh warehouse databases, one per sink run, all dropped at the end."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.created: list[str] = []

    async def fresh(self, label: str) -> str:
        name = f"{self.settings.postgres.database}_{label}"
        self.created.append(name)
        await migrate_warehouse(self.settings, name)
        return name

    async def drop_all(self) -> None:
        admin = await connect(self.settings.postgres, "postgres")
        try:
            for name in self.created:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def run_sink(
    settings: Settings,
    *,
    database: str,
    topics: Sequence[str],
    group: str,
    expected: dict[tuple[str, int], int],
    timeout_s: float,
    on_assigned: Callable[[], None] | None = None,
    metrics: Metrics | None = None,
) -> SinkRun:
    """Run a fresh sink until it committed every record below ``expected``'s offsets."""
    sink = _TimedSink(
        settings,
        expected=expected,
        worker_id="bench",
        topics=topics,
        group_id=group,
        database=database,
        metrics=metrics,
    )
    stop = asyncio.Event()
    _reset_peak_rss()
    rss_before = _rss_mb("VmRSS")
    started = time.perf_counter()
    task = asyncio.create_task(sink.run(stop))
    try:
        if on_assigned is not None:

            async def assigned() -> bool:
                return sink.assigned_at is not None or task.done()

            await eventually(assigned, timeout_s=60, what="the sink's partition assignment")
            if not task.done():
                on_assigned()
        finished = asyncio.create_task(sink.done.wait())
        await asyncio.wait({task, finished}, timeout=timeout_s, return_when="FIRST_COMPLETED")
        finished.cancel()
        if task.done():
            task.result()  # raises what stopped the sink
            raise RuntimeError("the sink stopped before it committed every record")
        if not sink.done.is_set():
            raise TimeoutError(f"the sink did not commit every record in {timeout_s:.0f} s")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)
    assert sink.assigned_at is not None
    assert sink.finished_at is not None
    return SinkRun(
        batch_max_records=settings.sink.batch_max_records,
        records=sum(expected.values()),
        seconds=sink.finished_at[0] - sink.assigned_at[0],
        startup_s=sink.assigned_at[0] - started,
        cpu_s=sink.finished_at[1] - sink.assigned_at[1],
        rss_before_mb=round(rss_before, 1),
        peak_rss_mb=round(_rss_mb("VmHWM"), 1),
        batches=sink.stats.batches,
        quality_sweep_s=round(sink.sweep_s, 3),
        commits=sink.commits,
    )


async def check_exactly_once(settings: Settings, database: str, records: int, data: int) -> None:
    """Bronze holds one row per data record and the accounting covers every record."""
    connection = await connect(settings.postgres, database)
    try:
        bronze = 0
        for table in TABLES:
            bronze += await connection.fetchval(
                f"SELECT count(*) FROM (SELECT DISTINCT source_topic, source_partition, "  # noqa: S608
                f"source_offset FROM bronze.{table}) AS d"
            )
        consumed = await connection.fetchval(
            "SELECT coalesce(sum(consumed), 0) FROM ops.sink_batches"
        )
    finally:
        await connection.close()
    if bronze != data or consumed != records:
        raise RuntimeError(
            f"the sink in {database} wrote {bronze} bronze rows for {data} data records and "
            f"accounted {consumed} of {records} records: not exactly once"
        )


# -- latency at a fraction of the max throughput ---------------------------------------------------
ReplayRecord = tuple[str, int, bytes | None, bytes | None, list[tuple[str, str | bytes | None]]]


#: How long a new producer polls before its first timed record (see ``warmed_producer``).
PRODUCER_WARM_UP_S = 1.0


def warmed_producer(bootstrap: str, topics: set[str]) -> Producer:
    """A producer that has its connection, the topics' metadata and its idempotence id.

    A cold idempotent producer held its first records for ~0.5 s here (measured: first
    delivery 0.50 s after ``produce`` cold, 0.001 s after this warm-up). A record's Kafka
    timestamp is taken at ``produce``, so the latency row charged that wait to the sink:
    in one traced run the first ~2,000 records, more than half of those above the p99.
    librdkafka has no call that waits for the producer id, so this polls for a fixed while.
    """
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True}
    )
    for topic in sorted(topics):
        producer.list_topics(topic, timeout=30)
    deadline = time.monotonic() + PRODUCER_WARM_UP_S
    while time.monotonic() < deadline:
        producer.poll(0.05)
    return producer


def replay(bootstrap: str, records: list[ReplayRecord], rate: float) -> None:
    """Produce ``records`` at ``rate`` per second (runs in its own process), from a warmed
    producer: the clock starts at the first record, not at the producer's start."""
    producer = warmed_producer(bootstrap, {topic for topic, *_ in records})
    started = time.monotonic()
    for number, (topic, partition, key, value, headers) in enumerate(records):
        delay = started + number / rate - time.monotonic()
        if delay > 0.001:
            time.sleep(delay)
        producer.produce(topic, value, key, partition=partition, headers=headers)
        if number % 200 == 0:
            producer.poll(0)
    producer.flush(60)


def replay_plan(
    records: Sequence[CapturedRecord], topic_map: dict[str, str], passes: int
) -> list[ReplayRecord]:
    """The records in their original interleaving (Kafka timestamp order), ``passes`` times."""
    ordered = sorted(records, key=lambda r: (r.timestamp_ms, r.topic, r.partition, r.offset))
    one: list[ReplayRecord] = [
        (topic_map[r.topic], r.partition, r.key, r.value, [*r.headers]) for r in ordered
    ]
    return one * passes


def create_topics(bootstrap: str, partitions: dict[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, count, 1) for topic, count in partitions.items()], operation_timeout=15
    )
    for future in futures.values():
        future.result(timeout=30)


def timestamps(
    bootstrap: str, marks: dict[tuple[str, int], int], group: str
) -> dict[tuple[str, int], list[int]]:
    """Kafka timestamps (ms) of the replayed records, per partition, in offset order."""
    by_partition: dict[tuple[str, int], list[int]] = defaultdict(list)
    for record in read_records(bootstrap, marks, group):
        by_partition[(record.topic, record.partition)].append(record.timestamp_ms)
    return by_partition


def latencies_ms(
    commits: Sequence[tuple[float, str, int, int]],
    stamps: dict[tuple[str, int], list[int]],
    *,
    skip_s: float = 0.0,
) -> list[float]:
    """Per record: its batch's commit wall time minus its Kafka timestamp; without the
    records committed in the first ``skip_s`` seconds after the first commit."""
    position: dict[tuple[str, int], int] = defaultdict(int)
    result: list[float] = []
    since = min((commit[0] for commit in commits), default=0.0) + skip_s
    for committed_at, topic, partition, next_offset in commits:
        key = (topic, partition)
        if committed_at >= since:
            for offset in range(position[key], next_offset):
                result.append(committed_at * 1000 - stamps[key][offset])
        position[key] = max(position[key], next_offset)
    return result


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


# -- the run ---------------------------------------------------------------------------------
async def measure(env: SinkEnv, options: BenchOptions, warehouses: Warehouses) -> dict[str, Any]:
    settings = env.settings
    bootstrap = settings.kafka.bootstrap_servers
    say = console.log
    say(f"generating load until {options.changes:,} CDC records are on Kafka")
    expected, load_s = await generate_load(env, options)
    marks = {k: v for k, v in high_watermarks(env).items() if v}
    total = sum(marks.values())
    say(f"{total:,} records on {len(marks)} partitions after {load_s:.1f} s")
    records = read_records(bootstrap, marks, f"{settings.kafka.consumer_group}-capture")

    say("B0: raw confluent-kafka consumer")
    b0 = b0_raw_consumer(bootstrap, marks, f"{settings.kafka.consumer_group}-b0")

    say("B2: raw fastavro, and our full decode of the same records")
    registry = RegistryClient(settings.registry)
    try:
        codec = AvroCodec(registry)
        decoder = DebeziumAvroDecoder(codec)
        consumed = decode_records(decoder, records)  # warms both schema caches
        b2, decode_rate, values = b2_and_decode_rates(codec, decoder, records)
    finally:
        registry.close()
    rows = bronze_rows(consumed, f"postgres.{settings.postgres.database}")
    data_records = len(rows)
    del consumed

    say(f"B1: COPY of {data_records:,} bronze rows into an unindexed table")
    b1 = await b1_copy(settings, rows, options.batch_max_records)
    del rows  # the sink runs below should not carry the baselines' memory

    runs: list[SinkRun] = []
    batches = [options.batch_max_records] * max(1, options.repeats) + list(options.sweep)
    for number, batch in enumerate(batches):
        say(f"ours: medallion sink, batch_max_records={batch}")
        database = await warehouses.fresh(f"r{number}")
        run = await run_sink(
            _with_batch(settings, batch),
            database=database,
            topics=env.topics,
            group=f"{settings.kafka.consumer_group}-r{number}",
            expected=marks,
            timeout_s=options.phase_timeout_s,
        )
        await check_exactly_once(settings, database, total, data_records)
        say(f"  {run.records_per_s:,.0f} records/s, {run.batches} batches")
        runs.append(run)
    repeats = runs[: max(1, options.repeats)]
    main = max(repeats, key=lambda r: r.records_per_s)

    overhead = await _metrics_overhead(env, options, warehouses, marks, total, data_records)

    rate = options.latency_rate or main.records_per_s * options.latency_fraction
    passes = max(1, math.ceil(options.latency_min_s * rate / total))
    say(f"latency: replaying {passes} x {total:,} records at {rate:,.0f}/s into fresh topics")
    replay_prefix = f"{settings.topics.cdc_prefix}replay"
    topic_map = {
        topic: topic.replace(settings.topics.cdc_prefix, replay_prefix, 1) for topic in env.topics
    }
    partitions: dict[str, int] = defaultdict(int)
    for topic, partition in high_watermarks(env):
        partitions[topic_map[topic]] = max(partitions[topic_map[topic]], partition + 1)
    create_topics(bootstrap, partitions)
    replay_marks = {(topic_map[t], p): high * passes for (t, p), high in marks.items()}
    plan = replay_plan(records, topic_map, passes)
    del records
    database = await warehouses.fresh("latency")
    producer = multiprocessing.get_context("spawn").Process(
        target=replay, args=(bootstrap, plan, rate), name="bench-replay"
    )
    try:
        latency_run = await run_sink(
            settings,
            database=database,
            topics=list(partitions),
            group=f"{settings.kafka.consumer_group}-latency",
            expected=replay_marks,
            timeout_s=options.phase_timeout_s,
            on_assigned=producer.start,
        )
        producer.join(timeout=30)
    finally:
        if producer.is_alive():
            producer.terminate()
            producer.join(timeout=10)
    await check_exactly_once(settings, database, total * passes, data_records * passes)
    stamps = timestamps(bootstrap, replay_marks, f"{settings.kafka.consumer_group}-capture")
    latencies = latencies_ms(latency_run.commits, stamps)
    first = min(s[0] for s in stamps.values())
    last = max(s[-1] for s in stamps.values())
    half = len(latencies) // 2  # commit order: the earlier half of the records, the later half
    result = _report(
        expected,
        load_s,
        (b0, b1, b2, decode_rate),
        values,
        main,
        repeats,
        runs[len(repeats) :],
        {
            "target_rate_per_s": round(rate),
            "offered_rate_per_s": round(len(latencies) / max((last - first) / 1000, 1e-9)),
            "records": len(latencies),
            "passes": passes,
            "batches": latency_run.batches,
            "mean_batch_records": round(len(latencies) / max(latency_run.batches, 1), 1),
            "p50_ms": round(percentile(latencies, 0.50), 1),
            "p90_ms": round(percentile(latencies, 0.90), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "max_ms": round(max(latencies), 1),
            # Rising from the first to the second half: the sink fell behind the offered rate.
            "p99_first_half_ms": round(percentile(latencies[:half], 0.99), 1),
            "p99_second_half_ms": round(percentile(latencies[half:], 0.99), 1),
            "sink_rate_per_s": round(len(latencies) / (latency_run.commits[-1][0] - first / 1000)),
            "cpu_s_per_1k_records": round(latency_run.cpu_s_per_1k, 4),
            "quality_sweep_s": latency_run.quality_sweep_s,
            "phase_s": round(latency_run.seconds, 2),
        },
    )
    result["metrics_overhead"] = overhead
    return result


async def _metrics_overhead(
    env: SinkEnv,
    options: BenchOptions,
    warehouses: Warehouses,
    marks: dict[tuple[str, int], int],
    total: int,
    data_records: int,
) -> dict[str, Any]:
    """Throughput with metrics on and off, alternating, on the same records."""
    settings = env.settings
    rates: dict[str, list[float]] = {"on": [], "off": []}
    for number in range(max(1, options.metrics_pairs)):
        for arm in ("on", "off"):
            console.log(f"metrics {arm}: run {number + 1}")
            database = await warehouses.fresh(f"m{arm}{number}")
            run = await run_sink(
                settings,
                database=database,
                topics=env.topics,
                group=f"{settings.kafka.consumer_group}-m{arm}{number}",
                expected=marks,
                timeout_s=options.phase_timeout_s,
                metrics=Metrics(CollectorRegistry()) if arm == "on" else NullMetrics(),
            )
            await check_exactly_once(settings, database, total, data_records)
            rates[arm].append(run.records_per_s)
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    return {
        "records_per_s_on": [round(r) for r in rates["on"]],
        "records_per_s_off": [round(r) for r in rates["off"]],
        "overhead_fraction": round(1 - on / off, 4),
        "target_fraction": 0.05,
    }


def _with_batch(settings: Settings, batch: int) -> Settings:
    return settings.model_copy(
        update={"sink": settings.sink.model_copy(update={"batch_max_records": batch})}
    )


def _report(
    expected: int,
    load_s: float,
    rates: tuple[float, float, float, float],
    values: int,
    main: SinkRun,
    repeats: list[SinkRun],
    sweep: list[SinkRun],
    latency: dict[str, Any],
) -> dict[str, Any]:
    b0, b1, b2, decode_rate = rates
    ours = main.records_per_s
    return {
        "input": {
            "records": main.records,
            "value_records": values,
            "loadgen_expected_records": expected,
            "prepare_s": round(load_s, 1),
        },
        "baselines": {
            "b0_raw_consumer_records_per_s": round(b0),
            "b1_copy_unindexed_rows_per_s": round(b1),
            "b2_fastavro_records_per_s": round(b2),
        },
        "ours": {
            **main.summary(),
            "decode_records_per_s": round(decode_rate),
            "repeats_records_per_s": [round(run.records_per_s) for run in repeats],
            "sweep": [run.summary() for run in sweep],
        },
        "latency": latency,
        "ratios": {
            "ours_over_b0": round(ours / b0, 4),
            "ours_over_b1": round(ours / b1, 4),
            "ours_over_target_20k": round(ours / TARGET_RECORDS_PER_S, 4),
            "decode_over_b2": round(decode_rate / b2, 4),
            "p99_over_500ms": round(latency["p99_ms"] / TARGET_P99_MS, 4),
            "peak_rss_over_400mb": round(main.peak_rss_mb / TARGET_RSS_MB, 4),
        },
        "targets": {
            "records_per_s": TARGET_RECORDS_PER_S,
            "ours_over_b0": TARGET_RATIO_B0,
            "p99_ms_at_half_max": TARGET_P99_MS,
            "rss_mb": TARGET_RSS_MB,
        },
        "environment": {
            "python": platform.python_version(),
            "confluent_kafka": confluent_kafka.__version__,
            "librdkafka": confluent_kafka.libversion()[0],
            "asyncpg": asyncpg.__version__,
            "fastavro": fastavro.__version__,
            "cpus": multiprocessing.cpu_count(),
            "load_average": _load_average(),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }


def _load_average() -> list[float]:
    with contextlib.suppress(OSError):
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    return []


def render(result: dict[str, Any]) -> Table:
    """The figures, absolute and as ratios against the baselines and targets."""
    base, ours, lat, ratio = (
        result["baselines"],
        result["ours"],
        result["latency"],
        result["ratios"],
    )
    table = Table(title=f"medallion sink benchmark, {result['input']['records']:,} CDC records")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("ratio", justify="right")
    table.add_column("against")
    b0 = base["b0_raw_consumer_records_per_s"]
    row = table.add_row
    row("B0 raw confluent-kafka consume()", f"{b0:,}", "records/s", "", "")
    row("B1 asyncpg COPY, unindexed jsonb", f"{base['b1_copy_unindexed_rows_per_s']:,}", "rows/s")
    row("B2 fastavro schemaless_reader", f"{base['b2_fastavro_records_per_s']:,}", "records/s")
    row(
        "our decode (framing, envelope, types)",
        f"{ours['decode_records_per_s']:,}",
        "records/s",
        f"{ratio['decode_over_b2']:.3f}",
        "B2",
    )
    tries = ", ".join(f"{r:,}" for r in ours["repeats_records_per_s"])
    row(
        f"ours: sink end to end, batch {ours['batch_max_records']}",
        f"{ours['records_per_s']:,}",
        "records/s",
        f"{ratio['ours_over_b0']:.3f}",
        f"B0 (target >= {TARGET_RATIO_B0}); best of {tries}",
    )
    row("", "", "", f"{ratio['ours_over_target_20k']:.3f}", f"{TARGET_RECORDS_PER_S:,}/s target")
    row("", "", "", f"{ratio['ours_over_b1']:.3f}", "B1")
    row("  records per partition batch", f"{ours['mean_batch_records']:,}", "mean")
    row("  startup (group join, claims)", f"{ours['startup_s']:.2f}", "s", "", "not in the rate")
    row("  CPU per 1k records", f"{ours['cpu_s_per_1k_records'] * 1000:.1f}", "ms")
    row(
        "  peak RSS of the process",
        f"{ours['peak_rss_mb']:,.0f}",
        "MB",
        f"{ratio['peak_rss_over_400mb']:.3f}",
        f"{TARGET_RSS_MB:.0f} MB target; {ours['rss_before_mb']:,.0f} MB before the sink",
    )
    for run in ours["sweep"]:
        row(
            f"ours: sink, batch {run['batch_max_records']}",
            f"{run['records_per_s']:,}",
            "records/s",
            f"{run['records_per_s'] / b0:.3f}",
            f"B0; {run['cpu_s_per_1k_records'] * 1000:.1f} ms CPU/1k",
        )
    row(
        f"latency at {lat['offered_rate_per_s']:,} records/s offered",
        f"p50 {lat['p50_ms']:,.0f}",
        "ms",
        "",
        f"{lat['records']:,} records, {lat['mean_batch_records']} per partition batch",
    )
    row("", f"p99 {lat['p99_ms']:,.0f}", "ms", f"{ratio['p99_over_500ms']:.3f}", "500 ms target")
    row("", f"max {lat['max_ms']:,.0f}", "ms")
    row(
        "  p99 first half / second half",
        f"{lat['p99_first_half_ms']:,.0f} / {lat['p99_second_half_ms']:,.0f}",
        "ms",
        "",
        f"sink committed {lat['sink_rate_per_s']:,} records/s over the phase",
    )
    return table


@contextlib.contextmanager
def _cleanup_groups(settings: Settings, runs: int) -> Iterator[None]:
    try:
        yield
    finally:
        group = settings.kafka.consumer_group
        names = [f"{group}-r{n}" for n in range(runs)] + [f"{group}-latency", f"{group}-b0"]
        names.append(f"{group}-capture")
        names += [f"{group}-m{arm}{n}" for arm in ("on", "off") for n in range(runs)]
        delete_consumer_groups(settings.kafka.bootstrap_servers, names)


def run(options: BenchOptions, settings: Settings | None = None) -> dict[str, Any]:
    """The whole benchmark; returns the result (also written to ``options.json_path``)."""
    base = settings or load_settings()
    with pipeline_environment(
        base, batch_max_records=options.batch_max_records, names=BENCH_NAMES
    ) as env:
        warehouses = Warehouses(env.settings)
        replay_prefix = f"{env.settings.topics.cdc_prefix}replay"
        try:
            runs = max(1, options.repeats) + len(options.sweep) + options.metrics_pairs
            with _cleanup_groups(env.settings, runs):
                result = asyncio.run(_measure_then_drop(env, options, warehouses))
        finally:
            delete_topics_with_prefix(env.settings.kafka.bootstrap_servers, replay_prefix)
    options.json_path.parent.mkdir(parents=True, exist_ok=True)
    options.json_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


async def _measure_then_drop(
    env: SinkEnv, options: BenchOptions, warehouses: Warehouses
) -> dict[str, Any]:
    try:
        return await measure(env, options, warehouses)
    finally:
        await warehouses.drop_all()


def parse_sizes(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=BenchOptions.changes)
    parser.add_argument("--json", type=Path, default=RESULTS, dest="json_path")
    parser.add_argument("--batch", type=int, default=BenchOptions.batch_max_records)
    parser.add_argument(
        "--sweep", type=parse_sizes, default=BenchOptions.sweep, help="e.g. 500,2000 ('' for none)"
    )
    parser.add_argument("--repeats", type=int, default=BenchOptions.repeats)
    parser.add_argument("--latency-fraction", type=float, default=BenchOptions.latency_fraction)
    parser.add_argument(
        "--latency-rate", type=float, default=None, help="records/s (default: a fraction of max)"
    )
    parser.add_argument("--latency-min-s", type=float, default=BenchOptions.latency_min_s)
    parser.add_argument(
        "--metrics-pairs",
        type=int,
        default=BenchOptions.metrics_pairs,
        help="alternating runs with metrics on and off",
    )
    args = parser.parse_args(argv)
    options = BenchOptions(
        changes=args.changes,
        batch_max_records=args.batch,
        sweep=args.sweep,
        repeats=args.repeats,
        latency_fraction=args.latency_fraction,
        latency_rate=args.latency_rate,
        latency_min_s=args.latency_min_s,
        metrics_pairs=args.metrics_pairs,
        json_path=args.json_path,
    )
    result = run(options)
    console.print(render(result))
    overhead = result["metrics_overhead"]
    console.print(
        f"metrics overhead: {overhead['overhead_fraction']:+.1%} (on {overhead['records_per_s_on']}"
        f" vs off {overhead['records_per_s_off']} records/s; target < 5 %)"
    )
    console.print(f"written {options.json_path}")


if __name__ == "__main__":
    main()
