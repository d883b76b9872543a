"""``run_chaos``: load, workers and a seeded fault schedule on one isolated pipeline, then
quiescence and the oracle.

The run: the load generator writes to the OLTP source in small chunks (a chunk that fails
because PostgreSQL went away is simply followed by the next one: whatever committed is in
the source, and the source is what the oracle judges by); two or more ``bitvelocity worker``
processes run the medallion sink (all of them) and the analytics and cache agents (the first
one: its state is rebuilt by replay and is not split across workers); a fault from the
seeded deck every few seconds, each logged with its time and outage. At the end every
service is brought back, the connector healed, the load stopped, the sink drained, and the
oracle judged until it passes or the convergence deadline passes (analytics and Redis
converge after the sink: I4 and I5 are "after quiescence").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.pipeline_env import high_watermarks
from chaos.env import ChaosEnv
from chaos.faults import (
    FAULTS,
    OUTAGES,
    FaultContext,
    FaultSchedule,
    heal_connector,
    start_services,
)
from chaos.oracle import OracleTarget, Verdict, judge
from chaos.workers import WorkerPool
from config.settings import Settings
from oltp.loadgen import LoadgenConfig, run_loadgen
from sinks.postgres.connection import connect
from stack.manager import Stack

log = logging.getLogger("bitvelocity.chaos")
Progress = Callable[[str], None]
#: Orders are created at most this far back, so none ages out of the 30-day feature window
#: during a run (the oracle recomputes features at one as-of time). The run's revenue
#: retention is shorter (``chaos.env.CHAOS_RETENTION_DAYS``): the load lies on both sides
#: of it, and one window crosses it while the run goes on.
DAYS_BACK = 20


@dataclass(frozen=True)
class ChaosConfig:
    minutes: float
    seed: int
    workers: int = 2
    rate: float = 20.0  # load generator business transactions per second
    faults: tuple[str, ...] = tuple(FAULTS)
    #: I7: a record may wait this long beyond the longest outage (restart, rebalance, backoff).
    stall_allowance_s: float = 60.0
    drain_timeout_s: float = 300.0
    converge_timeout_s: float = 240.0
    log_dir: Path = Path(".state/chaos")


@dataclass(frozen=True)
class FaultRecord:
    at_s: float  # since the start of the run
    wall: datetime
    kind: str
    detail: str
    outage_s: float


@dataclass
class ChaosReport:
    faults: list[FaultRecord] = field(default_factory=list)
    verdict: Verdict = field(default_factory=Verdict)
    load_chunks: int = 0
    load_failures: int = 0
    worker_crashes: int = 0
    allowed_stall_s: float = 0.0


async def run_chaos(
    base: Settings, env: ChaosEnv, config: ChaosConfig, progress: Progress
) -> ChaosReport:
    """Run ``config`` on ``env`` (made by ``chaos_environment``) and judge it."""
    _check_config(config)
    rng = random.Random(config.seed)
    agents = _worker_agents(config.workers)
    pool = WorkerPool(env.worker_env(), config.log_dir / env.run_id, agents)
    ctx = FaultContext(env, Stack(base), pool, rng, progress)
    ctx.load_allowed.set()
    report = ChaosReport()
    started = time.monotonic()
    deadline = started + config.minutes * 60
    load_done = asyncio.Event()
    load = asyncio.create_task(_load(env, config, ctx, deadline, load_done, report, progress))
    monitor: asyncio.Task[None] | None = None
    try:
        await _wait_for_topics(env)
        pool.start_all()
        names = ", ".join(f"{name} ({'+'.join(run)})" for name, run in agents.items())
        progress(f"workers started: {names}")
        monitor = asyncio.create_task(_monitor(env, pool, report, started, progress))
        await _inject_faults(ctx, config, started, deadline, report)
        progress("fault schedule done; stopping the load")
        await load
        await restore(ctx, progress)
        await drain(env, pool, report, config.drain_timeout_s, progress)
        report.verdict = await _judge_after_quiescence(env, config, report, progress)
        return report
    finally:
        await _tear_down(ctx, load, load_done, monitor)


def _check_config(config: ChaosConfig) -> None:
    """Refuse a run that could not test anything: one worker, or a fault we do not know."""
    if config.workers < 2:
        raise ValueError("a chaos run needs at least two workers")
    unknown = set(config.faults) - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}; choose from {sorted(FAULTS)}")


def _worker_agents(workers: int) -> dict[str, Sequence[str]]:
    """The agents per worker: the sink on all, analytics and cache on the first only (their
    state is rebuilt by replay and not split across workers)."""
    agents: dict[str, Sequence[str]] = {"w1": ("medallion", "analytics", "cache")}
    agents |= {f"w{i}": ("medallion",) for i in range(2, workers + 1)}
    return agents


async def _inject_faults(
    ctx: FaultContext, config: ChaosConfig, started: float, deadline: float, report: ChaosReport
) -> None:
    """After 15 s of calm, one fault from the seeded deck after another until 10 s before the
    deadline, each recorded in ``report`` with its time and outage."""
    progress = ctx.progress
    schedule = FaultSchedule(ctx.rng, kinds=config.faults)
    await asyncio.sleep(min(15.0, max(0.0, deadline - time.monotonic())))
    while time.monotonic() < deadline - 10:
        kind = schedule.next_kind(deadline - time.monotonic())
        begun = time.monotonic()
        wall = datetime.now(UTC)
        progress(f"FAULT {kind}: injecting")
        detail = await asyncio.wait_for(FAULTS[kind](ctx), timeout=600)
        record = FaultRecord(begun - started, wall, kind, detail, time.monotonic() - begun)
        report.faults.append(record)
        progress(
            f"FAULT {kind} at {record.wall:%H:%M:%S} (+{record.at_s:.0f} s): {detail};"
            f" recovered in {record.outage_s:.1f} s"
        )
        await asyncio.sleep(min(schedule.next_gap(), max(0.0, deadline - time.monotonic())))


async def _judge_after_quiescence(
    env: ChaosEnv, config: ChaosConfig, report: ChaosReport, progress: Progress
) -> Verdict:
    """The oracle's verdict once converged; I7 allows a stall as long as the longest outage
    plus ``config.stall_allowance_s`` (also stored in ``report``)."""
    outages = [f.outage_s for f in report.faults if f.kind in OUTAGES]
    report.allowed_stall_s = max(outages, default=0.0) + config.stall_allowance_s
    return await converge(
        OracleTarget(
            env.settings,
            env.medallion_group,
            allowed_stall_s=report.allowed_stall_s,
            worker_exits=report.worker_crashes,
        ),
        config.converge_timeout_s,
        progress,
    )


async def _tear_down(
    ctx: FaultContext,
    load: asyncio.Task[None],
    load_done: asyncio.Event,
    monitor: asyncio.Task[None] | None,
) -> None:
    """Stop the load, the monitor and the workers, and bring every service back, whether
    the run finished or was cut short."""
    load_done.set()
    if not load.done():
        load.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await load
    if monitor is not None:
        monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor
    await asyncio.to_thread(ctx.pool.stop_all)
    # A run cut short (an error, Ctrl-C) must not leave a service stopped or paused.
    await asyncio.to_thread(_resume_paused, ctx)
    await start_services()


async def _load(
    env: ChaosEnv,
    config: ChaosConfig,
    ctx: FaultContext,
    deadline: float,
    done: asyncio.Event,
    report: ChaosReport,
    progress: Progress,
) -> None:
    """Chunks of seeded transactions at ``config.rate`` until the deadline."""
    chunk_s = 5.0
    while time.monotonic() < deadline and not done.is_set():
        await ctx.load_allowed.wait()
        seed = config.seed * 100_003 + report.load_chunks
        report.load_chunks += 1
        try:
            await run_loadgen(
                env.settings,
                LoadgenConfig(
                    seed=seed,
                    transactions=max(1, int(config.rate * chunk_s)),
                    rate=config.rate,
                    days_back=DAYS_BACK,
                ),
            )
        except Exception as exc:  # noqa: BLE001 - a fault hit the load; the next chunk goes on
            report.load_failures += 1
            progress(f"load chunk {report.load_chunks} failed ({type(exc).__name__}); going on")
            await asyncio.sleep(1)


async def _wait_for_topics(env: ChaosEnv, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while sum((await asyncio.to_thread(high_watermarks, env.sink)).values()) == 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no CDC record on Kafka after {timeout_s:.0f} s")
        await asyncio.sleep(1)


async def _stored_offsets(env: ChaosEnv) -> dict[tuple[str, int], int]:
    connection = await connect(env.settings.postgres)
    try:
        rows = await connection.fetch(
            "SELECT topic, partition, next_offset FROM ops.consumer_offsets WHERE group_id = $1",
            env.medallion_group,
        )
        return {(r[0], r[1]): r[2] for r in rows}
    finally:
        await connection.close()


async def _monitor(
    env: ChaosEnv, pool: WorkerPool, report: ChaosReport, started: float, progress: Progress
) -> None:
    """Progress every 10 s; a worker that exited by itself is counted and restarted."""
    while True:
        await asyncio.sleep(10)
        for name in pool.revive_dead():
            report.worker_crashes += 1
            progress(f"worker {name} had exited by itself: restarted")
        try:
            marks = await asyncio.to_thread(high_watermarks, env.sink)
            stored = await _stored_offsets(env)
        except Exception as exc:  # noqa: BLE001 - a service is down: the next round reports
            progress(f"+{time.monotonic() - started:.0f} s: progress unavailable ({exc!r:.80})")
            continue
        on_kafka = sum(marks.values())
        lag = sum(max(0, v - stored.get(k, 0)) for k, v in marks.items())
        progress(
            f"+{time.monotonic() - started:.0f} s: {on_kafka} CDC records, lag {lag},"
            f" {len(report.faults)} faults, {report.load_chunks} load chunks"
        )


async def restore(ctx: FaultContext, progress: Progress) -> None:
    """Every service up and ready, the connector running, every worker alive."""
    await start_services()
    statuses = await asyncio.to_thread(ctx.stack.status)
    progress("stack: " + ", ".join(f"{s.name} {s.state}" for s in statuses))
    await heal_connector(ctx)


async def drain(
    env: ChaosEnv, pool: WorkerPool, report: ChaosReport, timeout_s: float, progress: Progress
) -> None:
    """Until Kafka stops growing and the stored offsets reached its ends, twice 2 s apart."""
    deadline = time.monotonic() + timeout_s
    previous: dict[tuple[str, int], int] | None = None
    while time.monotonic() < deadline:
        for name in pool.revive_dead():
            report.worker_crashes += 1
            progress(f"worker {name} had exited by itself: restarted")
        marks = await asyncio.to_thread(high_watermarks, env.sink)
        stored = await _stored_offsets(env)
        caught_up = sum(marks.values()) > 0 and all(
            stored.get(k, 0) >= v for k, v in marks.items() if v > 0
        )
        if caught_up and marks == previous:
            progress(f"sink drained: {sum(marks.values())} CDC records")
            return
        previous = marks if caught_up else None
        await asyncio.sleep(2)
    progress(f"sink not drained after {timeout_s:.0f} s: judging anyway")


def _resume_paused(ctx: FaultContext) -> None:
    for service in ctx.stack.services:
        pid = service.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


async def converge(target: OracleTarget, timeout_s: float, progress: Progress) -> Verdict:
    """Judge until the oracle passes or ``timeout_s`` passed; the last verdict."""
    deadline = time.monotonic() + timeout_s
    while True:
        verdict = await judge(target)
        if verdict.passed or time.monotonic() > deadline:
            return verdict
        progress(f"oracle: not converged yet ({', '.join(verdict.broken)}); judging again")
        await asyncio.sleep(5)
