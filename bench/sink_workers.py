"""Two medallion sink worker processes in one consumer group against one (issue 18).

Each worker is a process of its own (spawned: a fresh interpreter, its own GIL) running the
real ``MedallionSink`` over the run's input from offset 0; each arm gets a fresh group and a
fresh warehouse. The rate of an arm runs from the first partition assignment in any of its
workers to the last commit in any (the rebalance when the second worker joins is part of
it, as in production). Over the same window this process samples /proc (``bench.cpu_split``)
so the row shows where the machine's cores went: the workers, PostgreSQL (postmaster and
backends), the Kafka broker, everything else (other sessions' stacks), idle.

Exactly once is checked on each arm's warehouse: bronze holds each data record once (none
twice), the accounting covers every record, and silver holds one row per order and per
item of the input (known from how the input was made: ``bench.cdc_events``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from typing import Any

from bench import cpu_split
from bench.harness import BenchContext, Row, scenario
from bench.sink import _rss_mb, _TimedSink, check_exactly_once
from config.settings import Settings
from sinks.postgres.connection import connect
from stack.manager import Stack

#: Items per order in the input (``bench.cdc_events``: an order insert, two item inserts,
#: the order's update).
ITEMS_PER_ORDER = 2
TARGET_RATIO = 1.3


@dataclass(frozen=True)
class WorkerReport:
    """What one worker process says about its run (wall clock, comparable across processes)."""

    worker_id: str
    assigned_at: float | None
    last_commit_at: float | None
    batches: int
    records: int
    partitions: int
    fenced: int
    peak_rss_mb: float


@dataclass(frozen=True)
class WorkersRun:
    workers: list[WorkerReport]
    records: int
    seconds: float
    cpu: dict[str, float]

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds


# -- the worker process -----------------------------------------------------------------------
def sink_worker(
    settings: Settings,
    database: str,
    topics: list[str],
    group: str,
    worker_id: str,
    stop: Event,
    report: Connection,
) -> None:
    """A worker process: the sink runs until ``stop`` is set, then reports on ``report``."""
    report.send(asyncio.run(_work(settings, database, topics, group, worker_id, stop)))


async def _work(
    settings: Settings, database: str, topics: list[str], group: str, worker_id: str, stop: Event
) -> WorkerReport:
    sink = _TimedSink(
        settings,
        expected={},
        worker_id=worker_id,
        topics=topics,
        group_id=group,
        database=database,
    )
    stopping = asyncio.Event()
    task = asyncio.create_task(sink.run(stopping))
    # A process-shared Event cannot be awaited; a thread blocked on it would outlive a
    # sink that failed. Polling it costs nothing measurable.
    while not stop.is_set() and not task.done():  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    stopping.set()
    await asyncio.wait_for(task, timeout=60)
    assigned = None
    if sink.assigned_at is not None:  # perf_counter -> wall clock, as the commit stamps are
        assigned = time.time() - (time.perf_counter() - sink.assigned_at[0])
    return WorkerReport(
        worker_id,
        assigned,
        sink.commits[-1][0] if sink.commits else None,
        sink.stats.batches,
        sink.stats.consumed,
        len({(topic, partition) for _, topic, partition, _ in sink.commits}),
        sink.stats.fenced,
        round(_rss_mb("VmHWM"), 1),
    )


# -- one arm: N workers -------------------------------------------------------------------
async def run_workers(context: BenchContext, count: int, label: str) -> WorkersRun:
    """``count`` worker processes in one group over the input, until every record is
    committed; the CPU split of the window from the first claim to the last offset."""
    database = await context.fresh_warehouse(label)
    group = context.group(label)
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    processes, pipes = [], []
    for number in range(count):
        receive, send = spawn.Pipe(duplex=False)
        process = spawn.Process(
            target=sink_worker,
            args=(context.settings, database, context.topics, group, f"w{number}", stop, send),
            name=f"bench-sink-{label}-{number}",
        )
        process.start()
        processes.append(process)
        pipes.append(receive)
    stack = Stack(context.settings)
    services = {name: stack.service(name).pid() for name in ("postgres", "kafka")}
    groups = {
        "workers": [p.pid for p in processes if p.pid is not None],
        **{name: [pid] for name, pid in services.items() if pid is not None},
    }
    marks = context.cdc.marks
    try:
        offsets = await connect(context.settings.postgres, database)
        try:
            deadline = time.monotonic() + context.options.phase_timeout_s
            while not await _stored(offsets, group):
                _alive(processes, deadline)
                await asyncio.sleep(0.02)
            before = cpu_split.sample(groups)
            while not _caught_up(await _stored(offsets, group), marks):
                _alive(processes, deadline)
                await asyncio.sleep(0.05)
            after = cpu_split.sample(groups)
        finally:
            await offsets.close()
        stop.set()
        reports = [pipe.recv() if pipe.poll(90) else None for pipe in pipes]
    finally:
        stop.set()
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)
    if any(report is None for report in reports):
        raise RuntimeError(f"{label}: a worker process did not report")
    workers = [r for r in reports if r is not None]
    await check_exactly_once(context.settings, database, context.data_records, context.data_records)
    await check_silver(context.settings, database, context.cdc.orders)
    starts = [w.assigned_at for w in workers if w.assigned_at is not None]
    ends = [w.last_commit_at for w in workers if w.last_commit_at is not None]
    cores = multiprocessing.cpu_count()
    seconds = max(ends) - min(starts)
    return WorkersRun(workers, context.data_records, seconds, cpu_split.split(before, after, cores))


def _alive(processes: Sequence[BaseProcess], deadline: float) -> None:
    for process in processes:
        if not process.is_alive():
            raise RuntimeError(f"{process.name} exited with {process.exitcode}")
    if time.monotonic() > deadline:
        raise TimeoutError("the sink workers did not commit every record in time")


async def _stored(connection: Any, group: str) -> dict[tuple[str, int], int]:
    rows = await connection.fetch(
        "SELECT topic, partition, next_offset FROM ops.consumer_offsets WHERE group_id = $1", group
    )
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


def _caught_up(stored: dict[tuple[str, int], int], marks: dict[tuple[str, int], int]) -> bool:
    return all(stored.get(key, 0) >= high for key, high in marks.items() if high)


async def check_silver(settings: Settings, database: str, orders: int) -> None:
    """One silver row per order and per item of the input, none twice (the oracle is how
    the input was made, not the sink)."""
    connection = await connect(settings.postgres, database)
    try:
        found = {
            table: await connection.fetchval(f"SELECT count(*) FROM silver.{table}")  # noqa: S608
            for table in ("orders", "order_items")
        }
    finally:
        await connection.close()
    wanted = {"orders": orders, "order_items": orders * ITEMS_PER_ORDER}
    if found != wanted:
        raise RuntimeError(f"silver in {database} holds {found}, the input makes {wanted}")


# -- the row ---------------------------------------------------------------------------------
def cpu_note(cpu: dict[str, float]) -> str:
    """``workers 20.1 s, postgres 9.3 s, kafka 1.2 s, other 5.0 s, idle 2.1 s of 37.7 s``."""
    parts = [f"{name} {cpu[name]:.1f} s" for name in ("workers", "postgres", "kafka", "other")]
    parts.append(f"idle {cpu['idle']:.1f} s")
    return f"CPU {', '.join(parts)} of {cpu['capacity_s']:.1f} s"


def workers_row(one: WorkersRun, two: WorkersRun) -> Row:
    ratio = cpu_split.ratio(two.records_per_s, one.records_per_s)
    split = "+".join(str(w.partitions) for w in two.workers)
    return Row(
        "sink-2workers",
        "ours: 2 sink worker processes, one group",
        two.records_per_s,
        records=two.records,
        seconds=two.seconds,
        figures={
            "one_worker_records_per_s": round(one.records_per_s, 1),
            "ratio_to_one_worker": ratio,
            "target_ratio": TARGET_RATIO,
            "exactly_once": True,  # checked on both arms' warehouses, or the row failed
            "peak_rss_mb": max(w.peak_rss_mb for w in two.workers),
            "cpu_s_per_1k_records": round(two.cpu["workers"] / two.records * 1000, 4),
            "partitions_per_worker": [w.partitions for w in two.workers],
            "records_per_worker": [w.records for w in two.workers],
            "fenced_batches": sum(w.fenced for w in two.workers),
            "cpu_split_one_worker": one.cpu,
            "cpu_split_two_workers": two.cpu,
        },
        note=(
            f"{ratio or 0:.2f} x one worker ({one.records_per_s:,.0f}/s); partitions {split}; "
            f"2 workers: {cpu_note(two.cpu)}; 1 worker: {cpu_note(one.cpu)}"
        ),
    )


@scenario("sink-2workers", "two sink worker processes in one group vs one, exactly once")
async def sink_two_workers(context: BenchContext) -> list[Row]:
    one = await run_workers(context, 1, "w1")
    two = await run_workers(context, 2, "w2")
    return [workers_row(one, two)]
