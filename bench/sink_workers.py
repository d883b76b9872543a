"""Two medallion sink worker processes in one consumer group against one (issue 18).

Each worker is a process of its own (spawned: a fresh interpreter, its own GIL) running the
real ``MedallionSink`` over the run's input from offset 0; each arm gets a fresh group and a
fresh warehouse. The workers start together (each signals when built; one ``go``), and this
process watches the offsets table: an arm's rate counts the records committed from the
moment every worker owns partitions (the group formed: a second member joining rebalances
it, which is start-up, like any group join) to the last commit; the rate including the
join is in the figures too. Over the same window this process samples /proc
(``bench.cpu_split``) so the row shows where the machine's cores went: the workers,
PostgreSQL (postmaster and backends), the Kafka broker, everything else (other sessions'
stacks), idle.

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

from agents.medallion import MedallionSink
from bench import cpu_split
from bench.harness import BenchContext, Row, scenario
from bench.sink import _rss_mb, _TimedSink, check_exactly_once
from config.settings import Settings
from sinks.postgres.connection import connect
from stack.manager import Stack
from streams.memory import tune_garbage_collector
from streams.runtime import PartitionId

#: Items per order in the input (``bench.cdc_events``: an order insert, two item inserts,
#: the order's update).
ITEMS_PER_ORDER = 2
TARGET_RATIO = 1.3
#: Runs per arm, interleaved; the best of each counts (the machine is shared).
REPEATS = 2


@dataclass(frozen=True)
class WorkerReport:
    """What one worker process says about its run."""

    worker_id: str
    batches: int
    records: int  # committed by this worker
    assigned: list[PartitionId]  # owned at the end
    fenced: int
    peak_rss_mb: float


@dataclass(frozen=True)
class WorkersRun:
    """One arm. ``seconds`` and ``cpu`` cover the window from the moment every worker owned
    partitions (the group formed: a second worker joining rebalances it) to the last
    commit; ``records`` are those committed in it. ``join_s`` is what came before."""

    workers: list[WorkerReport]
    records: int
    seconds: float
    join_s: float
    total_records: int
    cpu: dict[str, float]

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds

    @property
    def with_join_records_per_s(self) -> float:
        return self.total_records / (self.join_s + self.seconds)


# -- the worker process -----------------------------------------------------------------------
def sink_worker(
    settings: Settings,
    database: str,
    topics: list[str],
    group: str,
    worker_id: str,
    go: Event,
    stop: Event,
    report: Connection,
) -> None:
    """A worker process: says it is ready (imports done, sink built), starts on ``go``, runs
    until ``stop`` is set, then sends its ``WorkerReport``."""
    # The benchmark's sink (the real one, quality gate included); it needs no expected
    # positions here: this process decides when the arm is done.
    sink = _TimedSink(
        settings, expected={}, worker_id=worker_id, topics=topics, group_id=group, database=database
    )
    tune_garbage_collector(settings.worker.gc_gen0_threshold)  # as `bitvelocity worker` does
    report.send("ready")
    if go.wait(120):
        report.send(asyncio.run(_work(sink, worker_id, stop)))


async def _work(sink: MedallionSink, worker_id: str, stop: Event) -> WorkerReport:
    stopping = asyncio.Event()
    task = asyncio.create_task(sink.run(stopping))
    # A process-shared Event cannot be awaited; a thread blocked on it would outlive a
    # sink that failed. Polling it costs nothing measurable.
    while not stop.is_set() and not task.done():  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assigned = sorted(sink.committer.claims)  # before stopping: leaving the group revokes them
    stopping.set()
    await asyncio.wait_for(task, timeout=60)
    return WorkerReport(
        worker_id,
        sink.stats.batches,
        sink.stats.consumed,
        assigned,
        sink.stats.fenced,
        round(_rss_mb("VmHWM"), 1),
    )


# -- one arm: N workers -------------------------------------------------------------------
async def run_workers(context: BenchContext, count: int, label: str) -> WorkersRun:
    """``count`` worker processes in one group over the input, until every record is
    committed. This process watches the offsets table: the window opens when every worker
    has claimed a partition, and closes when the stored offsets reach the input's end."""
    database = await context.fresh_warehouse(label)
    group = context.group(label)
    spawn = multiprocessing.get_context("spawn")
    go, stop = spawn.Event(), spawn.Event()
    processes, pipes = [], []
    for number in range(count):
        receive, send = spawn.Pipe(duplex=False)
        process = spawn.Process(
            target=sink_worker,
            args=(context.settings, database, context.topics, group, f"w{number}", go, stop, send),
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
    try:
        started = time.monotonic() + 120
        for pipe, process in zip(pipes, processes, strict=True):  # imports are not measured
            while not pipe.poll(0.1):
                _alive([process], started)
            if pipe.recv() != "ready":
                raise RuntimeError(f"{process.name} did not start")
        go.set()
        watched = await _watch(context, database, group, count, groups, processes)
        stop.set()
        reports = [pipe.recv() if pipe.poll(90) else None for pipe in pipes]
    finally:
        stop.set()
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)
    workers = [r for r in reports if isinstance(r, WorkerReport)]
    if len(workers) != count:
        raise RuntimeError(f"{label}: a worker process did not report")
    await check_exactly_once(context.settings, database, context.data_records, context.data_records)
    await check_silver(context.settings, database, context.cdc.orders)
    return WorkersRun(workers, total_records=context.data_records, **watched)


async def _watch(
    context: BenchContext,
    database: str,
    group: str,
    count: int,
    groups: dict[str, list[int]],
    processes: Sequence[BaseProcess],
) -> dict[str, Any]:
    """Poll the offsets table until every record is committed; sample the CPU when the
    group has formed and at the end."""
    workers = {f"w{number}" for number in range(count)}
    marks = context.cdc.marks
    deadline = time.monotonic() + context.options.phase_timeout_s
    connection = await connect(context.settings.postgres, database)
    first: cpu_split.CpuSample | None = None
    formed: cpu_split.CpuSample | None = None
    committed_before = 0
    try:
        while True:
            _alive(processes, deadline)
            stored = await _stored(connection, group)
            if stored and first is None:
                first = cpu_split.sample(groups)
            if formed is None and {owner for _, owner in stored.values()} >= workers:
                formed = cpu_split.sample(groups)
                committed_before = sum(offset for offset, _ in stored.values())
            if _caught_up(stored, marks):
                end = cpu_split.sample(groups)
                break
            await asyncio.sleep(0.02)
    finally:
        await connection.close()
    assert first is not None
    if formed is None:  # a small input done before the last worker claimed anything
        formed, committed_before = first, 0
    cores = multiprocessing.cpu_count()
    return {
        "records": context.data_records - committed_before,
        "seconds": end.at - formed.at,
        "join_s": formed.at - first.at,
        "cpu": cpu_split.split(formed, end, cores),
    }


def _alive(processes: Sequence[BaseProcess], deadline: float) -> None:
    for process in processes:
        if not process.is_alive():
            raise RuntimeError(f"{process.name} exited with {process.exitcode}")
    if time.monotonic() > deadline:
        raise TimeoutError("the sink workers did not commit every record in time")


async def _stored(connection: Any, group: str) -> dict[PartitionId, tuple[int, str]]:
    rows = await connection.fetch(
        "SELECT topic, partition, next_offset, owner FROM ops.consumer_offsets WHERE group_id = $1",
        group,
    )
    return {(r["topic"], r["partition"]): (r["next_offset"], r["owner"]) for r in rows}


def _caught_up(stored: dict[PartitionId, tuple[int, str]], marks: dict[PartitionId, int]) -> bool:
    return all(stored.get(key, (0, ""))[0] >= high for key, high in marks.items() if high)


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


def best(runs: Sequence[WorkersRun]) -> WorkersRun:
    return max(runs, key=lambda run: run.records_per_s)


def workers_row(ones: Sequence[WorkersRun], twos: Sequence[WorkersRun]) -> Row:
    """The row of the best run of each arm (as the baselines: best of ``REPEATS``)."""
    one, two = best(ones), best(twos)
    ratio = cpu_split.ratio(two.records_per_s, one.records_per_s)
    split = "+".join(str(len(w.assigned)) for w in two.workers)
    return Row(
        "sink-2workers",
        "ours: 2 sink worker processes, one group",
        two.records_per_s,
        records=two.total_records,
        seconds=two.seconds,
        figures={
            "one_worker_records_per_s": round(one.records_per_s, 1),
            "ratio_to_one_worker": ratio,
            "target_ratio": TARGET_RATIO,
            "one_worker_runs_records_per_s": [round(r.records_per_s) for r in ones],
            "two_workers_runs_records_per_s": [round(r.records_per_s) for r in twos],
            "exactly_once": True,  # checked on every run's warehouse, or the row failed
            "records_in_window": two.records,
            "join_s": round(two.join_s, 2),
            "with_join_records_per_s": round(two.with_join_records_per_s, 1),
            "peak_rss_mb": max(w.peak_rss_mb for w in two.workers),
            "cpu_s_per_1k_records": round(two.cpu["workers"] / two.records * 1000, 4),
            "one_worker_cpu_s_per_1k_records": round(one.cpu["workers"] / one.records * 1000, 4),
            "partitions_per_worker": [len(w.assigned) for w in two.workers],
            "records_per_worker": [w.records for w in two.workers],
            "fenced_batches": sum(w.fenced for w in two.workers),
            "cpu_split_one_worker": one.cpu,
            "cpu_split_two_workers": two.cpu,
        },
        note=(
            f"{ratio or 0:.2f} x one worker ({one.records_per_s:,.0f}/s), best of {REPEATS}; "
            f"partitions {split}; 2 workers: {cpu_note(two.cpu)}; 1 worker: {cpu_note(one.cpu)}"
        ),
    )


@scenario("sink-2workers", "two sink worker processes in one group vs one, exactly once")
async def sink_two_workers(context: BenchContext) -> list[Row]:
    ones: list[WorkersRun] = []
    twos: list[WorkersRun] = []
    for attempt in range(REPEATS):  # interleaved: a change of the machine's load hits both
        ones.append(await run_workers(context, 1, f"w1r{attempt}"))
        twos.append(await run_workers(context, 2, f"w2r{attempt}"))
    return [workers_row(ones, twos)]
