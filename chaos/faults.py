"""The faults a chaos run injects, one coroutine each, and the seeded schedule choosing them.

Every fault returns only once what it broke is back (service ready again, connector task
running, killed worker restarted), so faults never overlap and each one's outage is the
time its coroutine took. Services are stopped and started with the stack's own service
code (``stack/``), as ``bitvelocity stack`` does; the pause is a SIGSTOP/SIGCONT of the
service's process, what a network partition looks like to its clients.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
import httpx
from confluent_kafka import Consumer, Producer, TopicPartition

from admin.capture import drop_slot_when_released
from admin.connectors import ConnectClient, debezium_postgres_config, oltp_connector_spec
from bench.pipeline_env import high_watermarks
from chaos.env import ChaosEnv
from chaos.workers import WorkerPool
from sinks.postgres.connection import connect
from stack.manager import Stack

log = logging.getLogger("bitvelocity.chaos")
Progress = Callable[[str], None]


@dataclass
class FaultContext:
    """What faults act on; ``load_allowed`` is cleared to hold the load generator."""

    env: ChaosEnv
    stack: Stack
    pool: WorkerPool
    rng: random.Random
    progress: Progress
    load_allowed: asyncio.Event = field(default_factory=asyncio.Event)
    resnapshots: int = 0
    schema_changes: int = 0

    @property
    def connector(self) -> str:
        return f"bv-chaos-{self.env.run_id}"


Fault = Callable[[FaultContext], Awaitable[str]]


# -- helpers ----------------------------------------------------------------------------------
async def restart_service(ctx: FaultContext, name: str, down_s: float) -> None:
    """Stop ``name``, keep it down ``down_s`` seconds, start it and wait until it is ready."""
    service = ctx.stack.service(name)
    await asyncio.to_thread(service.stop)
    await asyncio.sleep(down_s)
    await start_services(name)


async def start_services(*names: str) -> None:
    """``bitvelocity stack up [names]`` in a process of its own, as an operator would: the
    services it starts are detached from it and outlive it (started from this process,
    they would be its children)."""
    output = b""
    for attempt in range(3):  # a JVM may die while starting on a loaded machine: again
        if attempt:
            log.warning("stack up %s failed; trying again", " ".join(names))
            await asyncio.sleep(5)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli.main",
            "stack",
            "up",
            *names,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode == 0:
            return
    raise RuntimeError(f"stack up {' '.join(names)} failed: {output.decode()[-2000:]}")


async def heal_connector(ctx: FaultContext, timeout_s: float = 180.0) -> None:
    """Restart failed connector tasks (Debezium fails its task when a dependency went away)
    until the connector and its task run."""
    deadline = time.monotonic() + timeout_s
    settings = ctx.env.settings
    while True:
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                await client.post(
                    f"{settings.connect.url}/connectors/{ctx.connector}/restart",
                    params={"includeTasks": "true", "onlyFailed": "true"},
                )
            with ConnectClient(settings) as connect_client:
                await asyncio.to_thread(connect_client.wait_running, ctx.connector, 20)
            return
        except Exception as exc:  # anything: Connect is still coming back
            if time.monotonic() > deadline:
                raise RuntimeError(f"connector {ctx.connector} not running again: {exc}") from exc
            await asyncio.sleep(2)


def _producer(ctx: FaultContext) -> Producer:
    # log_level 5: no info lines about purged background events at exit
    return Producer({"bootstrap.servers": ctx.env.settings.kafka.bootstrap_servers, "log_level": 5})


Headers = list[tuple[str, str | bytes | None]] | None
#: topic, partition, key, value, headers
Injected = tuple[str, int, bytes | None, bytes | None, Headers]


def _produce(ctx: FaultContext, records: Sequence[Injected]) -> None:
    producer = _producer(ctx)
    for topic, partition, key, value, headers in records:
        producer.produce(topic, key=key, value=value, partition=partition, headers=headers)
    if producer.flush(30) != 0:
        raise RuntimeError("injected records not delivered within 30 s")


def _read_some(ctx: FaultContext, count: int) -> list[Injected]:
    """Up to ``count`` consecutive records from a random non-empty CDC partition."""
    bootstrap = ctx.env.settings.kafka.bootstrap_servers
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bv-chaos-injector"})
    try:
        candidates = []
        for topic in ctx.env.sink.topics:
            metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
            for partition in metadata.partitions if metadata else {}:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                if high > low:
                    candidates.append((topic, partition, low, high))
        if not candidates:
            return []
        topic, partition, low, high = ctx.rng.choice(sorted(candidates))
        start = ctx.rng.randint(low, max(low, high - count))
        consumer.assign([TopicPartition(topic, partition, start)])
        records: list[Injected] = []
        deadline = time.monotonic() + 20
        while len(records) < min(count, high - start) and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=count, timeout=1):
                if not message.error() and len(records) < count:
                    headers = message.headers()
                    records.append(
                        (
                            topic,
                            partition,
                            _bytes(message.key()),
                            _bytes(message.value()),
                            list(headers.items()) if isinstance(headers, dict) else headers,
                        )
                    )
        return records
    finally:
        consumer.close()


def _bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


# -- the faults -------------------------------------------------------------------------------
async def kill_worker(ctx: FaultContext) -> str:
    name = ctx.rng.choice(sorted(ctx.pool.agents))
    await asyncio.to_thread(ctx.pool.kill, name)
    await asyncio.sleep(ctx.rng.uniform(0.5, 3.0))
    ctx.pool.start(name)
    return f"SIGKILL worker {name}, restarted"


async def restart_postgres(ctx: FaultContext) -> str:
    await restart_service(ctx, "postgres", ctx.rng.uniform(1, 4))
    await heal_connector(ctx)
    return "PostgreSQL stopped, started"


async def restart_redis(ctx: FaultContext) -> str:
    await restart_service(ctx, "redis", ctx.rng.uniform(1, 4))
    return "Redis stopped, started"


async def restart_kafka(ctx: FaultContext) -> str:
    await restart_service(ctx, "kafka", ctx.rng.uniform(1, 3))
    await heal_connector(ctx)
    return "Kafka broker stopped, started"


async def restart_connect(ctx: FaultContext) -> str:
    await restart_service(ctx, "connect", ctx.rng.uniform(1, 3))
    await heal_connector(ctx)
    return "Kafka Connect stopped, started"


async def registry_outage(ctx: FaultContext) -> str:
    down = ctx.rng.uniform(5, 15)
    await restart_service(ctx, "registry", down)
    await heal_connector(ctx)
    return f"schema registry down {down:.0f} s"


async def network_pause(ctx: FaultContext) -> str:
    name = ctx.rng.choice(["kafka", "redis", "registry"])
    pid = ctx.stack.service(name).pid()
    if pid is None:
        return f"{name} not running: nothing paused"
    pause = ctx.rng.uniform(3, 10)
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(pause)
    finally:
        os.kill(pid, signal.SIGCONT)
    return f"{name} paused (SIGSTOP) {pause:.1f} s"


async def poison_records(ctx: FaultContext) -> str:
    topic = ctx.rng.choice(ctx.env.sink.topics)
    partition = ctx.rng.randrange(ctx.env.settings.topics.partitions)
    records: list[Injected] = [
        (topic, partition, b"\x00garbage-key", b"\xde\xad\xbe\xef not avro", None),
        (topic, partition, None, b"\x00\x7f\xff\xff\xf0unknown-schema-id", None),
    ]
    await asyncio.to_thread(_produce, ctx, records)
    return f"2 poison records on {topic}[{partition}]"


async def malformed_bytes(ctx: FaultContext) -> str:
    """Real records with their Avro body cut short: right framing, valid schema id, garbage."""
    taken = await asyncio.to_thread(_read_some, ctx, 3)
    cut = [
        (t, p, k, v[: max(6, len(v) // 2)], h) for t, p, k, v, h in taken if isinstance(v, bytes)
    ]
    await asyncio.to_thread(_produce, ctx, cut)
    where = f" on {cut[0][0]}[{cut[0][1]}]" if cut else ""
    return f"{len(cut)} truncated Avro records{where}"


async def duplicate_batch(ctx: FaultContext) -> str:
    """A producer retry gone wrong: a run of records published again, byte for byte."""
    taken = await asyncio.to_thread(_read_some, ctx, ctx.rng.randint(5, 50))
    await asyncio.to_thread(_produce, ctx, taken)
    where = f" on {taken[0][0]}[{taken[0][1]}]" if taken else ""
    return f"{len(taken)} records published twice{where}"


async def resnapshot(ctx: FaultContext) -> str:
    """A second connector with a fresh slot re-reads every row (op "r") into the same topics:
    what a re-snapshot after a lost slot looks like downstream. The load is held meanwhile
    so the snapshot's end can be seen as the topics growing by the row count."""
    settings = ctx.env.settings
    ctx.resnapshots += 1
    spec = oltp_connector_spec(
        settings,
        name=f"bv-chaos-resnap-{ctx.env.run_id}-{ctx.resnapshots}",
        slot=f"bv_chaos_resnap_{ctx.env.run_id}_{ctx.resnapshots}",
    )
    ctx.load_allowed.clear()
    try:
        connection = await connect(settings.postgres)
        try:
            rows = 0
            for table in (
                "categories",
                "customers",
                "products",
                "orders",
                "order_items",
                "payments",
            ):
                rows += int(await connection.fetchval(f"SELECT count(*) FROM public.{table}"))
        finally:
            await connection.close()
        before = await asyncio.to_thread(_total_records, ctx)
        with ConnectClient(settings) as client:
            config = debezium_postgres_config(settings, spec)
            # Debezium names its JMX metrics after the topic prefix, which the first
            # connector holds: without a tag of its own the second one waits ~2 minutes.
            config["custom.metric.tags"] = f"resnapshot={ctx.resnapshots}"
            await asyncio.to_thread(client.put, spec.name, config)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if await asyncio.to_thread(_total_records, ctx) >= before + rows:
                break
            await asyncio.sleep(1)
        else:
            log.warning("re-snapshot of %d rows not seen complete after 180 s", rows)
    finally:
        with ConnectClient(settings) as client:
            await asyncio.to_thread(client.delete, spec.name)
        admin = await connect(settings.postgres, "postgres")
        try:
            await drop_slot_when_released(admin, spec.slot, timeout_s=120)
        finally:
            await admin.close()
        ctx.load_allowed.set()
    return f"re-snapshot of {rows} rows by a second connector"


#: Widenings the ``schema-change`` fault applies in turn (lossless: silver must follow, decision
#: 0021); once they are used up it only adds columns.
SCHEMA_WIDENINGS = (
    "ALTER TABLE public.order_items ALTER COLUMN quantity TYPE bigint",
    "ALTER TABLE public.payments ALTER COLUMN amount TYPE numeric(16, 2)",
)
#: Tables the ``schema-change`` fault adds a column to, in turn.
SCHEMA_ADDITIONS = (("orders", "order_id"), ("customers", "customer_id"))


def schema_change_plan(step: int) -> list[str]:
    """The SQL of the ``step``-th ``schema-change`` fault (0, 1, ...), one transaction:
    an additive change on even steps, a widening on odd ones while one is left. A new
    column is filled on a few rows at once, so its values travel through the pipeline."""
    widening = step // 2
    if step % 2 and widening < len(SCHEMA_WIDENINGS):
        return [SCHEMA_WIDENINGS[widening]]
    table, key = SCHEMA_ADDITIONS[step % len(SCHEMA_ADDITIONS)]
    column = f"chaos_note_{step}"
    return [
        f"ALTER TABLE public.{table} ADD COLUMN {column} text",
        f"UPDATE public.{table} SET {column} = 'chaos {step} ' || {key} "
        f"WHERE {key} IN (SELECT {key} FROM public.{table} ORDER BY {key} DESC LIMIT 5)",
    ]


async def schema_change(ctx: FaultContext) -> str:
    """An application team's DDL on the OLTP source while the load runs: an added column or
    a widened type. The sink evolves silver (policy ``evolve``), so the oracle still holds
    with every column silver and the source share compared."""
    plan = schema_change_plan(ctx.schema_changes)
    ctx.schema_changes += 1
    connection = await connect(ctx.env.settings.postgres)
    try:
        for attempt in range(5):  # ALTER waits for the load's locks; never for long
            try:
                async with connection.transaction():
                    await connection.execute("SET LOCAL lock_timeout = '10s'")
                    for statement in plan:
                        await connection.execute(statement)
                break
            except asyncpg.LockNotAvailableError:
                log.warning("schema change waited too long for its lock (attempt %d)", attempt)
        else:
            return f"schema change not applied (lock busy): {plan[0]}"
    finally:
        await connection.close()
    return plan[0].removeprefix("ALTER TABLE ")


def _total_records(ctx: FaultContext) -> int:
    return sum(high_watermarks(ctx.env.sink).values())


FAULTS: dict[str, Fault] = {
    "worker-kill": kill_worker,
    "poison": poison_records,
    "malformed": malformed_bytes,
    "duplicate-batch": duplicate_batch,
    "network-pause": network_pause,
    "redis-restart": restart_redis,
    "postgres-restart": restart_postgres,
    "kafka-restart": restart_kafka,
    "connect-restart": restart_connect,
    "registry-outage": registry_outage,
    "resnapshot": resnapshot,
    "schema-change": schema_change,
}


#: Faults that take a component away; their duration bounds a stall (I7). The others only
#: add records (poison, duplicates, a re-snapshot's copies) and must not stall anything.
OUTAGES = frozenset(
    {
        "worker-kill",
        "network-pause",
        "redis-restart",
        "postgres-restart",
        "kafka-restart",
        "connect-restart",
        "registry-outage",
    }
)


#: Faults that take tens of seconds on a loaded machine (a JVM restart, a snapshot).
SLOW = frozenset(
    {"postgres-restart", "kafka-restart", "connect-restart", "registry-outage", "resnapshot"}
)
SLOW_MIN_REMAINING_S = 75.0


@dataclass
class FaultSchedule:
    """Faults drawn from a seeded deck: each kind once per round, in shuffled order, so a
    run long enough for one round meets every kind; gaps between faults are seeded too."""

    rng: random.Random
    kinds: tuple[str, ...] = tuple(FAULTS)
    gap_s: tuple[float, float] = (3.0, 10.0)
    _deck: list[str] = field(default_factory=list)

    def next_kind(self, remaining_s: float = float("inf")) -> str:
        """The next fault; with under ``SLOW_MIN_REMAINING_S`` left, the next quick one (a
        slow fault started near the end would run on past the run's length)."""
        if not self._deck:
            self._deck = list(self.kinds)
            self.rng.shuffle(self._deck)
        if remaining_s < SLOW_MIN_REMAINING_S:
            quick = [kind for kind in self._deck if kind not in SLOW]
            if quick:
                self._deck.remove(quick[0])
                return quick[0]
            quick = sorted(kind for kind in self.kinds if kind not in SLOW)
            if quick:
                return self.rng.choice(quick)
        return self._deck.pop(0)

    def next_gap(self) -> float:
        return self.rng.uniform(*self.gap_s)
