"""Scale-out stores: telemetry events/s into Cassandra, posts/s into MongoDB, per worker.

Run: ``python -m bench.scaleout [--telemetry N] [--posts N]`` (or ``bitvelocity bench
--scenario scaleout``) with the stack and ``stack up --with-scaleout`` running. Each run
builds its own topics, keyspace and database and drops them afterwards; prints a table and
writes ``bench/results/scaleout.json``. Every phase runs under a deadline
(``bench.scaleout_phases``): a stalled phase ends the run with an error naming the phase
and its progress, never a hang.

Baselines, measured in the same run on the same rows, are the raw drivers' best batch
write rates (the ceiling of any writer on this machine):
- Cassandra: the same prepared insert through ``execute_concurrent_with_args`` at several
  concurrencies, and unlogged batches grouped by partition; the best of them;
- MongoDB: motor ``insert_many(ordered=False)`` of the same documents in batches of 1,000
  into an empty collection, without and with the posts' indexes (no version check), and
  ``bulk_write`` of replaces by ``_id`` of documents already held (what an update costs at
  least on FerretDB; in bulks of ``REPLACE_CHUNK``, see ``sinks/mongo/posts.py``).
The agent figure is one ``StoreAgent`` draining the topic: events over the time it spent
decoding, writing and committing batches (Kafka fetch waits and group join excluded), with
the process's CPU seconds and peak RSS over the phase (the agent runs alone in it).
Not a test: no assertion here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cassandra.concurrent import execute_concurrent_with_args
from cassandra.query import BatchStatement, BatchType
from pymongo import ReplaceOne

from agents.scaleout_stores import ScaleoutStores, StoreAgent
from bench.scaleout_env import scaleout_environment, scaleout_stores_up
from bench.scaleout_phases import PhaseStalledError, run_phase
from bench.sink import _reset_peak_rss, _rss_mb
from config.settings import Settings, load_settings
from oltp.scaleout_events import ScaleoutLoad, post_events, telemetry_events
from oltp.scaleout_load import produce_scaleout
from sinks.cassandra.schema import TELEMETRY_TABLE
from sinks.cassandra.writer import CassandraWriter, telemetry_row
from sinks.mongo.posts import POST_INDEXES, motor_client, post_document, replace_chunks

RESULTS = Path(__file__).resolve().parent / "results" / "scaleout.json"
#: Deadline of each phase (produce, each agent, each baseline) by default.
PHASE_TIMEOUT_S = 600.0
#: Held documents replaced by the MongoDB baseline (replaces are ~100x slower than inserts).
REPLACE_SAMPLE = 200


def _best_of(runs: dict[str, float]) -> tuple[str, float]:
    name = max(runs, key=lambda k: runs[k])
    return name, runs[name]


def cassandra_baseline(
    writer: CassandraWriter, rows: list[tuple[Any, ...]], step: list[str]
) -> dict[str, float]:
    """Raw driver write rates (rows/s) of ``rows`` into the telemetry table, several ways;
    ``step[0]`` names the way being measured (the phase's progress)."""
    session = writer.session
    insert = session.prepare(
        f"INSERT INTO {writer.keyspace}.{TELEMETRY_TABLE} (device_id, sensor_type, "  # noqa: S608
        "timestamp, sensor_value, trace_id) VALUES (?, ?, ?, ?, ?)"
    )
    rates: dict[str, float] = {}
    for concurrency in (32, 64, 128):
        step[0] = f"execute_concurrent c={concurrency}"
        started = time.perf_counter()
        execute_concurrent_with_args(session, insert, rows, concurrency=concurrency)
        rates[step[0]] = len(rows) / (time.perf_counter() - started)
    by_partition: dict[tuple[Any, Any], list[tuple[Any, ...]]] = {}
    for row in rows:
        by_partition.setdefault((row[0], row[1]), []).append(row)
    batches = []
    for partition_rows in by_partition.values():
        for i in range(0, len(partition_rows), 50):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for row in partition_rows[i : i + 50]:
                batch.add(insert, row)
            batches.append(batch)
    step[0] = "unlogged batch per partition (50 rows, 64 in flight)"
    started = time.perf_counter()
    futures = [session.execute_async(b) for b in batches[:64]]
    pending = batches[64:]
    while futures:
        futures.pop(0).result()
        if pending:
            futures.append(session.execute_async(pending.pop(0)))
    rates[step[0]] = len(rows) / (time.perf_counter() - started)
    return rates


async def mongo_baseline(
    settings: Settings, documents: list[dict[str, Any]], step: list[str]
) -> dict[str, float]:
    """Raw motor write rates (documents/s) of ``documents`` into fresh collections."""
    client = motor_client(settings.mongo)
    database = client[settings.mongo.database]
    rates: dict[str, float] = {}
    try:
        indexed = database["raw_indexed"]
        for index in POST_INDEXES:  # one per command, as the writer does (FerretDB 1.24)
            await indexed.create_indexes([index])
        for name, collection in (
            ("no secondary index", "raw_insert"),
            ("posts' indexes", "raw_indexed"),
        ):
            step[0] = f"insert_many (1000, unordered), {name}"
            started = time.perf_counter()
            for i in range(0, len(documents), 1000):
                await database[collection].insert_many(documents[i : i + 1000], ordered=False)
            rates[step[0]] = len(documents) / (time.perf_counter() - started)
        held = documents[:REPLACE_SAMPLE]
        step[0] = f"bulk_write replace by _id of held docs ({len(held)}, bulks of 10)"
        started = time.perf_counter()
        for chunk in replace_chunks(held):
            await database["raw_insert"].bulk_write(
                [ReplaceOne({"_id": d["_id"]}, d) for d in chunk], ordered=False
            )
        rates[step[0]] = len(held) / (time.perf_counter() - started)
    finally:
        client.close()
    return rates


@dataclass(frozen=True)
class AgentFigures:
    events: int
    events_per_busy_s: float
    busy_s: float
    wall_s: float
    cpu_s: float
    peak_rss_mb: float


async def agent_figures(
    settings: Settings, kind: str, total: int, live: dict[str, StoreAgent]
) -> AgentFigures:
    """One store agent draining ``total`` events of its topic; ``live`` gets the agent (the
    phase's progress). The rate is events over the time it spent decoding, writing and
    committing (group join and idle polls excluded)."""
    _reset_peak_rss()
    cpu_before = time.process_time()
    started = time.perf_counter()
    stores = ScaleoutStores(settings, kinds=(kind,), group_prefix=settings.kafka.consumer_group)
    agent = live[kind] = stores.agents[kind]
    stop = asyncio.Event()
    task = asyncio.create_task(stores.run(stop))
    try:
        while agent.stats.consumed < total:
            if task.done():  # ended early: its error, or a stop nobody asked for
                await task
                raise RuntimeError(f"{kind} agent stopped at {agent.stats.consumed} of {total}")
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)
    stats = agent.stats
    return AgentFigures(
        events=stats.consumed,
        events_per_busy_s=stats.consumed / max(stats.busy_s, 1e-9),
        busy_s=stats.busy_s,
        wall_s=time.perf_counter() - started,
        cpu_s=time.process_time() - cpu_before,
        peak_rss_mb=round(_rss_mb("VmHWM"), 1),
    )


def _agent_progress(live: dict[str, StoreAgent], kind: str, total: int) -> Callable[[], str]:
    def progress() -> str:
        agent = live.get(kind)
        if agent is None:
            return "the agent was not created yet"
        s = agent.stats
        return (
            f"{s.consumed:,} of {total:,} events consumed in {s.batches} batches, "
            f"{s.retries} store retries, {s.dead_letters} dead letters"
        )

    return progress


def _timed_cpu(work: Callable[[], dict[str, float]]) -> tuple[dict[str, float], float]:
    before = time.process_time()
    rates = work()
    return rates, time.process_time() - before


def run(
    telemetry: int,
    posts: int,
    json_path: Path = RESULTS,
    *,
    phase_timeout_s: float = PHASE_TIMEOUT_S,
    batch_max_records: int | None = None,
) -> dict[str, Any]:
    """Measure both agents and both raw baselines; the figures (also written to JSON).
    The agents take Kafka batches of ``batch_max_records`` (default: the configured one)."""
    base = load_settings()
    batch = batch_max_records or base.sink.batch_max_records
    with scaleout_stores_up(base), scaleout_environment(base, batch_max_records=batch) as env:
        settings = env.settings
        load = ScaleoutLoad(seed=99, telemetry=telemetry, posts=posts)
        run_phase("produce", lambda: produce_scaleout(settings, load), timeout_s=phase_timeout_s)
        live: dict[str, StoreAgent] = {}
        agents: dict[str, AgentFigures] = {}
        for kind, total in (("telemetry", telemetry), ("posts", posts)):
            agents[kind] = run_phase(
                f"{kind} agent",
                lambda kind=kind, total=total: asyncio.run(  # type: ignore[misc]
                    agent_figures(settings, kind, total, live)
                ),
                timeout_s=phase_timeout_s,
                progress=_agent_progress(live, kind, total),
            )
        # Baselines after the agents, into tables/collections the agents never touched.
        step = ["connecting"]
        rows = [telemetry_row(e) for e in telemetry_events(load)]
        cassandra_rates, cassandra_cpu = run_phase(
            "cassandra baseline",
            lambda: _timed_cpu(lambda: _cassandra_rates(settings, f"{env.prefix}_raw", rows, step)),
            timeout_s=phase_timeout_s,
            progress=lambda: f"measuring {step[0]}",
        )
        documents = [post_document(e) for e in post_events(load)]
        step[0] = "connecting"
        mongo_rates, mongo_cpu = run_phase(
            "mongodb baseline",
            lambda: _timed_cpu(lambda: asyncio.run(mongo_baseline(settings, documents, step))),
            timeout_s=phase_timeout_s,
            progress=lambda: f"measuring {step[0]}",
        )
    result = {
        "when": datetime.now(UTC).isoformat(),
        "machine": platform.platform(),
        "cpus": os.cpu_count() or 0,
        "telemetry_events": telemetry,
        "posts": posts,
        "batch_max_records": batch,
        "cassandra": _store_figures(agents["telemetry"], cassandra_rates, cassandra_cpu, rows),
        "mongodb": _store_figures(agents["posts"], mongo_rates, mongo_cpu, documents),
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def _store_figures(
    agent: AgentFigures, rates: dict[str, float], raw_cpu_s: float, written: list[Any]
) -> dict[str, Any]:
    how, best = _best_of(rates)
    return {
        "agent": asdict(agent),
        "agent_events_per_s": agent.events_per_busy_s,
        "raw_rates": rates,
        "raw_best": {"how": how, "per_s": best},
        "raw_cpu_s": raw_cpu_s,
        "raw_written": len(written),
        "ratio_to_raw_best": agent.events_per_busy_s / best,
    }


def _cassandra_rates(
    settings: Settings, keyspace: str, rows: list[tuple[Any, ...]], step: list[str]
) -> dict[str, float]:
    from sinks.cassandra.schema import drop_keyspace

    raw = CassandraWriter(settings.cassandra, keyspace)
    raw.start()
    try:
        return cassandra_baseline(raw, rows, step)
    finally:
        drop_keyspace(raw.session, keyspace)
        raw.stop()


def render(result: dict[str, Any]) -> str:
    lines = [
        "| store | what | rate/s | vs raw best | CPU s | peak RSS MB |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for store, label, what in (
        ("cassandra", "Cassandra", "telemetry agent (decode, write, commit)"),
        ("mongodb", "MongoDB (FerretDB)", "posts agent (decode, versioned upsert, commit)"),
    ):
        figures = result[store]
        agent = figures["agent"]
        lines.append(
            f"| {label} | {what} | {figures['agent_events_per_s']:,.0f} | "
            f"{figures['ratio_to_raw_best']:.2f} | {agent['cpu_s']:.1f} | "
            f"{agent['peak_rss_mb']:.0f} |"
        )
        lines += [
            f"| {label} | raw: {how} | {rate:,.0f} | | | |"
            for how, rate in figures["raw_rates"].items()
        ]
        lines.append(f"| {label} | raw: all of the above | | | {figures['raw_cpu_s']:.1f} | |")
    return "\n".join(lines)


def run_and_report(
    telemetry: int,
    posts: int,
    json_path: Path,
    echo: Callable[[str], None],
    *,
    phase_timeout_s: float = PHASE_TIMEOUT_S,
    batch_max_records: int | None = None,
) -> None:
    """Run, print the table; a stalled phase prints its error and ends the process (exit 3)
    at once: its stuck thread is not waited for."""
    try:
        result = run(
            telemetry,
            posts,
            json_path,
            phase_timeout_s=phase_timeout_s,
            batch_max_records=batch_max_records,
        )
    except PhaseStalledError as exc:
        print(f"scaleout benchmark stalled: {exc}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(3)
    echo(render(result))
    echo(f"written {json_path}")


def main(argv: list[str] | None = None, *, echo: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--telemetry", type=int, default=20_000)
    parser.add_argument("--posts", type=int, default=5_000)
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--phase-timeout", type=float, default=PHASE_TIMEOUT_S)
    args = parser.parse_args(argv)
    run_and_report(args.telemetry, args.posts, args.json, echo, phase_timeout_s=args.phase_timeout)


if __name__ == "__main__":
    main()
