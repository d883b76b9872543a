"""Throughput of the real-time analytics (hourly revenue + customer features) against B0.

Run: ``python -m bench.analytics [--events N] [--json PATH]`` (or ``bitvelocity bench
--scenario analytics-detail``); from code: ``run_analytics_bench(events)``. One run builds an
isolated pipeline (``bench.pipeline_env``), lets the seeded load generator write until the
CDC topics hold N records, then measures on the records of the four topics the analytics
read (orders, order_items, products, categories), DESIGN.md section 12:

- B0: a raw confluent-kafka consumer, batch ``consume()``, no processing (events/s);
- catch-up: the production ``AnalyticsRunner`` (changelog-backed state, fresh group and
  state folder) from offset 0 until every event is applied and the state, gold, Redis
  and the output topics are written: events/s from the first consumed event to the end
  of that flush (and from start, start-up included), CPU seconds per 1k events, peak RSS;
- recovery: a second state store opened on the same changelog with an empty folder (the
  state folder lost): seconds to restore, entries, changelog records and bytes;
- live: with the runner caught up, the load generator writes ``live_events`` more records
  while it runs as in production (a flush every ``BV_FEATURES__FLUSH_INTERVAL``): Redis
  round trips per event (target <= 0.1: one pipeline per flush, never one per event).

Not a test: no figure is asserted. Everything it creates is removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import secrets
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import confluent_kafka
from rich.console import Console
from rich.table import Table

from agents.analytics import AnalyticsRunner, analytics_topics
from agents.analytics_state import AnalyticsStateStore
from bench.pipeline_env import (
    PipelineNames,
    SinkEnv,
    analytics_outputs,
    delete_consumer_groups,
    eventually,
    high_watermarks,
    pipeline_environment,
)
from bench.sink import BenchOptions, b0_raw_consumer, generate_load
from config.settings import Settings, load_settings

RESULTS = Path(__file__).resolve().parent / "results" / "analytics.json"
NAMES = PipelineNames("bv_abench_", "bvabench", "bv-abench-", "bv-abench-")
TARGET_ROUND_TRIPS_PER_EVENT = 0.1
console = Console(width=150)


def _events(marks: dict[tuple[str, int], int]) -> int:
    return sum(marks.values())


async def _until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"benchmark: {what} not reached in {timeout_s:.0f} s")
        await asyncio.sleep(0.05)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(
    env: SinkEnv, events: int, live_events: int, seed: int, timeout_s: float, state_dir: Path
) -> dict[str, Any]:
    settings = env.settings
    options = BenchOptions(changes=events, seed=seed, phase_timeout_s=timeout_s)
    generated, load_s = await generate_load(env, options)
    topics = analytics_topics(settings)
    marks = {k: v for k, v in high_watermarks(env, topics).items() if v}
    total = _events(marks)
    bootstrap = settings.kafka.bootstrap_servers
    group = settings.kafka.consumer_group
    b0 = await asyncio.to_thread(b0_raw_consumer, bootstrap, marks, f"{group}-b0")

    store = AnalyticsStateStore(
        bootstrap,
        topic=settings.topics.analytics_state,
        folder=state_dir,
        transactional_id=f"{group}-analytics-state",
    )
    runner = AnalyticsRunner(settings, group_id=f"{group}-analytics", store=store)
    stop = asyncio.Event()
    cpu0, started = _cpu_s(), time.perf_counter()
    task = asyncio.create_task(runner.run(stop))
    try:
        await _until(lambda: task.done() or runner.stats.consumed > 0, timeout_s, "first event")
        first_event_s = time.perf_counter() - started  # start-up: restore, connect, join
        # Caught up: replayed to the ends, reconciled, and that flush (state included) done.
        await _until(
            lambda: task.done() or (not runner.recovering and runner.stats.flushes >= 1),
            timeout_s,
            "catch-up",
        )
        if task.done():
            task.result()  # raises what stopped it
        caught_up_s = time.perf_counter() - started
        cpu_s = _cpu_s() - cpu0
        sinks = runner.sinks
        assert sinks is not None
        redis_before, consumed_before = sinks.redis.round_trips, runner.stats.consumed
        flushes_before = runner.stats.flushes

        # Live: more load while the runner flushes on its interval.
        published = _events(high_watermarks(env))
        live = BenchOptions(changes=live_events, seed=seed + 1000, phase_timeout_s=timeout_s)
        more, _ = await generate_load(env, live)

        async def on_kafka() -> bool:
            return _events(high_watermarks(env)) >= published + more

        await eventually(on_kafka, timeout_s=timeout_s, what="the live records on Kafka")
        ends = {k: v for k, v in high_watermarks(env, topics).items() if v}
        await _until(
            lambda: task.done() or all(runner.positions.get(k, 0) >= v for k, v in ends.items()),
            timeout_s,
            "live catch-up",
        )
        await runner.flush_now()
        live_consumed = runner.stats.consumed - consumed_before
        live_round_trips = sinks.redis.round_trips - redis_before
        live_flushes = runner.stats.flushes - flushes_before
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)
    # The state the run left, counted in its own folder (the runner closed its store).
    kept = AnalyticsStateStore(
        bootstrap,
        topic=settings.topics.analytics_state,
        folder=state_dir,
        transactional_id=f"{group}-analytics-state",
    )
    try:
        left = await asyncio.to_thread(kept.open)
    finally:
        kept.close()
    # Recovery: a second store on the same changelog with an empty folder (a lost disk).
    restored = AnalyticsStateStore(
        bootstrap,
        topic=settings.topics.analytics_state,
        folder=state_dir / "restored",
        transactional_id=f"{group}-analytics-state",
    )
    try:
        recovery = await asyncio.to_thread(restored.open)
    finally:
        restored.close()
    rate = total / (caught_up_s - first_event_s)
    return {
        "generated_records": generated,
        "load_s": round(load_s, 1),
        "events": total,
        "b0_events_per_s": round(b0),
        "ours": {
            "events_per_s": round(rate),
            "ratio_b0": round(rate / b0, 4),
            "seconds": round(caught_up_s - first_event_s, 2),
            "startup_s": round(first_event_s, 2),
            # the flush after the replay: gold, Redis, output topics, the whole state
            "final_flush_s": round(caught_up_s - (runner.recovered_after_s or 0.0), 2),
            "events_per_s_with_startup": round(total / caught_up_s),
            "restore_s": round(store.stats.seconds, 2),
            "cpu_ms_per_1k_events": round(cpu_s / total * 1e6, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "state_entries": left.state_entries,
            "hourly_rows": runner.stats.hourly_rows,
            "feature_rows": runner.stats.feature_rows,
        },
        "recovery": {
            "seconds": round(recovery.seconds, 2),
            "state_entries": recovery.state_entries,
            "changelog_records": recovery.changelog_records,
            "changelog_mb": round(recovery.changelog_bytes / 1e6, 2),
        },
        "live": {
            "events": live_consumed,
            "flushes": live_flushes,
            "redis_round_trips": live_round_trips,
            "redis_round_trips_per_event": round(live_round_trips / max(live_consumed, 1), 4),
            "target_round_trips_per_event": TARGET_ROUND_TRIPS_PER_EVENT,
        },
    }


def run_analytics_bench(
    events: int = 20_000,
    *,
    live_events: int = 2_000,
    seed: int = 42,
    timeout_s: float = 300.0,
    json_path: Path | None = RESULTS,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """The whole benchmark on about ``events`` CDC records; returns (and writes) the figures.

    Synchronous: it runs its own event loops (call it outside ``asyncio.run``).
    """
    base = settings or load_settings()
    with pipeline_environment(base, names=NAMES) as pipeline, analytics_outputs(pipeline) as env:
        group = env.settings.kafka.consumer_group
        try:
            with tempfile.TemporaryDirectory(prefix="bv-abench-") as folder:
                figures = asyncio.run(
                    _measure(env, events, live_events, seed, timeout_s, Path(folder))
                )
        finally:
            delete_consumer_groups(
                env.settings.kafka.bootstrap_servers, [f"{group}-b0", f"{group}-analytics"]
            )
    result = {
        "benchmark": "analytics",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": secrets.token_hex(3),
        "python": platform.python_version(),
        "confluent_kafka": confluent_kafka.__version__,
        "librdkafka": confluent_kafka.libversion()[0],
        "load_average": list(os.getloadavg()),
        **figures,
    }
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def render(result: dict[str, Any]) -> Table:
    ours, live = result["ours"], result["live"]
    table = Table(title=f"analytics benchmark: {result['events']:,} events (orders, items, ...)")
    table.add_column("measure")
    table.add_column("figure", justify="right")
    table.add_column("ratio / target", justify="right")
    table.add_row("B0 raw consume()", f"{result['b0_events_per_s']:,} events/s", "")
    table.add_row(
        "ours: revenue + features, catch-up",
        f"{ours['events_per_s']:,} events/s",
        f"{ours['ratio_b0']:.3f} x B0",
    )
    table.add_row(
        "  including start-up (restore, connect, group join)",
        f"{ours['events_per_s_with_startup']:,} events/s",
        f"start-up {ours['startup_s']} s",
    )
    table.add_row("  CPU per 1k events", f"{ours['cpu_ms_per_1k_events']} ms", "")
    table.add_row(
        "  of which the final flush (gold, Redis, state)", f"{ours['final_flush_s']} s", ""
    )
    table.add_row("  peak RSS (process)", f"{ours['peak_rss_mb']} MB", "400 MB")
    table.add_row("  state entries", f"{ours['state_entries']:,}", "")
    recovery = result["recovery"]
    table.add_row(
        f"recovery from the changelog alone ({recovery['changelog_records']:,} records,"
        f" {recovery['changelog_mb']} MB)",
        f"{recovery['seconds']} s",
        f"{recovery['state_entries']:,} entries",
    )
    table.add_row(
        f"live: Redis round trips ({live['events']:,} events, {live['flushes']} flushes)",
        f"{live['redis_round_trips_per_event']} per event",
        f"<= {live['target_round_trips_per_event']}",
    )
    return table


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--live-events", type=int, default=2_000)
    parser.add_argument("--json", type=Path, default=RESULTS, dest="json_path")
    args = parser.parse_args(argv)
    result = run_analytics_bench(
        args.events, live_events=args.live_events, json_path=args.json_path
    )
    console.print(render(result))
    console.print(f"written {args.json_path}")


if __name__ == "__main__":
    main()
