"""The one consumer runtime every pipeline runs on (docs/decisions/0022-one-consumer-runtime.md).

It owns a confluent-kafka consumer and the one thread that drives it, and gives a pipeline,
from asyncio:
- the consumer configuration (one place, ``consumer_config``) and the subscription;
- assignment at the pipeline's own start positions: ``start_positions`` is asked for the
  offsets of newly assigned partitions inside ``on_assign``, so the seek happens before the
  first fetch (DESIGN.md section 5, step 3). Each pipeline brings its own source: the
  PostgreSQL offsets table (medallion), Delta transaction versions (lake), the changelog's
  stored positions (analytics); without one, Kafka's committed offsets (idempotent agents,
  which then ``commit`` after their outputs are safe);
- ``take``: a batch of up to N records or T ms, counted from the previous take, so records
  that queued while the last batch was written are taken without a second wait; each record
  is converted (decoded) in the consumer's thread, in a plain loop;
- ``hold``: backpressure without leaving the group. While a pipeline waits (a database
  outage, a retry's backoff) it pauses its partitions and keeps polling, so the broker never
  sees ``max.poll.interval.ms`` pass; a record the poll still returns is kept for the next
  take, never dropped;
- ``seek`` (rewind to stored positions), ``commit``, ``close`` on ``stop``.

Invariant: a record is handed to the pipeline at most once per position the consumer holds;
what the pipeline has not committed is read again after a rewind, a rebalance or a restart.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_STORED,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from serdes.dead_letters import RecordOrigin

log = logging.getLogger("bitvelocity.runtime")
T = TypeVar("T")
PartitionId = tuple[str, int]
#: Where newly assigned partitions start: absolute offsets, or OFFSET_BEGINNING/OFFSET_STORED.
StartPositions = Callable[
    [list[PartitionId]], "dict[PartitionId, int] | Awaitable[dict[PartitionId, int]]"
]
PartitionsHook = Callable[[list[PartitionId]], None]


class StopSignal(Protocol):
    """An ``asyncio.Event`` or a ``threading.Event``: anything that says "stop now"."""

    def is_set(self) -> bool: ...


#: Consume errors that are part of normal life, not worth a warning.
_QUIET_ERRORS = frozenset({KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART})
#: Commit errors that mean "this member's assignment changed", not "something is broken".
_GROUP_CHURN = frozenset(
    {
        KafkaError._ASSIGNMENT_LOST,
        KafkaError._NO_OFFSET,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        # A restarted broker answers these without flagging them retriable (the 15-minute
        # chaos run: "Coordinator load in progress" exited the worker, I7).
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
    }
)
#: librdkafka may never join a group when it subscribed before any of its topics existed
#: (Debezium creates a table's topic with the first change): subscribe again after this.
RESUBSCRIBE_AFTER_S = 30.0
#: How often ``hold`` polls the paused consumer (far below any max.poll.interval.ms).
HOLD_POLL_S = 0.2
#: A take that waits for its pipeline's write fetches in slices this long, so it sees the
#: write end (or another call for the consumer's thread) within a slice.
TAKE_SLICE_S = 0.01
#: ... and stops waiting for the write this long after its window closed: a bound on what
#: the take holds back from anything else on the consumer's thread, whatever happens.
TAKE_UNTIL_MAX_S = 1.0
#: The longest a take's conversion may stall on one record (``ConsumerSpec.convert_stall_s``).
MAX_CONVERT_STALL_S = 30.0


@dataclass(frozen=True)
class ConsumerSpec:
    """What one pipeline consumes, and how."""

    #: The pipeline's name: thread name and log lines.
    name: str
    group_id: str
    topics: tuple[str, ...]
    max_records: int
    max_wait_ms: int
    #: A static member (``group.instance.id``) takes its partitions back at once after a
    #: crash instead of waiting out the dead member's session (the analytics owner).
    static_member_id: str | None = None
    #: The broker's eviction deadline; ``hold`` keeps polling far below it.
    max_poll_interval_ms: int = 120_000
    session_timeout_ms: int = 10_000
    fetch_wait_max_ms: int = 100

    @property
    def convert_stall_s(self) -> float:
        """How long ``convert`` may retry one record in the consumer's thread (a registry
        outage) before the take gives up: a quarter of ``max.poll.interval.ms``, at most
        30 s. The thread does not poll meanwhile, and a client retry in progress when the
        budget ends adds a few seconds: a fixed 30 s evicted a member configured at 20 s."""
        return min(MAX_CONVERT_STALL_S, self.max_poll_interval_ms / 1000 / 4)


#: The consumer's prefetch queue bounds (see ``consumer_config``).
PREFETCH_KBYTES = 8 * 1024
PREFETCH_MESSAGES = 20_000


def consumer_config(bootstrap_servers: str, spec: ConsumerSpec) -> dict[str, Any]:
    """The one consumer configuration of every pipeline."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "group.id": spec.group_id,
        # Offsets move only when the pipeline says so: in its own store, or by ``commit`` of
        # what ``take`` handed out (a record fetched but only held is never committed).
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": spec.session_timeout_ms,
        "heartbeat.interval.ms": max(500, spec.session_timeout_ms // 5),
        "max.poll.interval.ms": spec.max_poll_interval_ms,
        "fetch.wait.max.ms": spec.fetch_wait_max_ms,
        # Debezium creates a table's topic with its first change; without a short refresh a
        # subscription would not see a late topic for 5 minutes.
        "topic.metadata.refresh.interval.ms": 3000,
        # Round robin over every topic's partitions: the default range assignor splits each
        # 3-partition topic 2+1, so of two workers one held 12 of the 18 CDC partitions and
        # two workers could reach 1.5 x one at most (decision 0022). Range stays listed so a
        # member of an older version (range only) can still join the group while rolling.
        "partition.assignment.strategy": "roundrobin,range",
        # Prefetch at most 8 MB (librdkafka's default is 64 MB, plus its per-message
        # overhead): records are taken in batches of a few thousand, so 8 MB is still tens
        # of thousands ahead, and a catch-up no longer fills the worker's RSS with them.
        "queued.max.messages.kbytes": PREFETCH_KBYTES,
        "queued.min.messages": PREFETCH_MESSAGES,
    }
    if spec.static_member_id is not None:
        config["group.instance.id"] = spec.static_member_id
    return config


def origin_of(message: Message) -> RecordOrigin:
    """Where a consumed record came from, with its bytes and headers (for dead letters)."""
    consumed = cast(list[tuple[str, bytes | str | None]] | None, message.headers())
    headers = (
        tuple(
            (name, value if isinstance(value, bytes) else (value or "").encode())
            for name, value in consumed
        )
        if consumed
        else ()
    )
    return RecordOrigin(
        message.topic() or "",
        message.partition() or 0,
        message.offset() or 0,
        message.key(),
        message.value(),
        headers,
    )


class ConsumerRuntime:
    """One pipeline's consumer: ``async with ConsumerRuntime(...) as runtime: runtime.take()``."""

    def __init__(
        self,
        bootstrap_servers: str,
        spec: ConsumerSpec,
        *,
        start_positions: StartPositions | None = None,
        on_assigned: PartitionsHook | None = None,
        on_revoked: PartitionsHook | None = None,
    ) -> None:
        self.spec = spec
        self._config = consumer_config(bootstrap_servers, spec)
        self._start_positions = start_positions
        #: Without a store of its own the pipeline commits its positions to Kafka.
        self._kafka_commits = start_positions is None
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=spec.name)
        self._consumer: Consumer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held: list[Message] = []
        self._parked = ParkedPartitions()
        self._window_opened = time.monotonic()
        #: ``in_thread`` calls waiting for (or on) the consumer's thread: a take gives way.
        self._callers = 0
        #: Partitions revoked during the current take (``fetch_batch``).
        self._revoked: set[PartitionId] = set()
        self._subscribed_at = 0.0
        self.assigned_once = False
        #: Consumers replaced after a fatal error (the pipeline sees a rebalance).
        self.recreated = 0

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._consumer = Consumer(self._config)
        await self.in_thread(self._subscribe)

    async def stop(self) -> None:
        """Leave the group now (its partitions move at once) and end the thread."""
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await self.in_thread(consumer.close)
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> ConsumerRuntime:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError(f"{self.spec.name}: the consumer runtime is not started")
        return self._consumer

    async def in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """Run blocking Kafka work on this consumer's thread (the only one that touches it)."""
        self._callers += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        finally:
            self._callers -= 1

    # -- batches ----------------------------------------------------------------------------
    async def take(
        self, convert: Callable[[Message], T], until: threading.Event | None = None
    ) -> list[T]:
        """Up to ``max_records`` records, or what came within ``max_wait_ms`` of the last take,
        each converted in the consumer's thread. An exception of ``convert`` ends the batch:
        the pipeline rewinds (``seek``) to its stored positions. ``until``: see ``TakeWindow``.
        """
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._take, convert, until
        )

    async def take_messages(self) -> list[Message]:
        """``take`` without conversion."""
        return await self.take(_same)

    def _take(self, convert: Callable[[Message], T], until: threading.Event | None) -> list[T]:
        consumer = self.consumer
        self._resubscribe_if_never_assigned()
        spec = self.spec
        held, self._held = self._held, []
        window = TakeWindow(
            self._window_opened + spec.max_wait_ms / 1000, until, lambda: self._callers
        )
        self._revoked.clear()
        taken = fetch_batch(consumer, spec, held, convert, window, self._revoked)
        self._window_opened = window.last_fetch or time.monotonic()
        if taken.fatal is not None:
            # E.g. a static member fenced by its own earlier incarnation after a broker
            # restart (the chaos soak's analytics stalled on it): a new consumer rejoins, at
            # the pipeline's stored positions, as after any rebalance.
            log.error(
                "%s: fatal consumer error, starting a new consumer: %s", spec.name, taken.fatal
            )
            self._recreate()
            return taken.records
        if self._kafka_commits and taken.handed:
            consumer.store_offsets(
                offsets=[TopicPartition(t, p, o + 1) for (t, p), o in taken.handed.items()]
            )
        return taken.records

    # -- waiting without leaving the group ------------------------------------------------
    async def hold(self, seconds: float, stop: StopSignal | None = None) -> None:
        """Wait ``seconds`` (less if ``stop`` is set) with every partition paused, polling.

        The broker evicts a member that does not poll for ``max.poll.interval.ms``; a
        pipeline waiting out an outage must not be evicted, nor fetch more than it holds."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            await self.in_thread(self._poll_paused, min(HOLD_POLL_S, seconds))
            await asyncio.sleep(0)
        await self.in_thread(self._resume_all)

    async def polling_while(self, work: Awaitable[T], *, grace_s: float = 5.0) -> T:
        """Await ``work`` (blocking I/O in another thread); once it has taken longer than
        ``grace_s`` (a retry loop waiting out an outage), keep polling, paused, until it ends."""
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=grace_s)
        if done:  # the usual case: no call for the consumer's thread, where a take runs
            return task.result()
        while not done:
            await self.in_thread(self._poll_paused, HOLD_POLL_S)
            done, _ = await asyncio.wait({task}, timeout=0)
        await self.in_thread(self._resume_all)
        return task.result()

    def _poll_paused(self, timeout_s: float) -> None:
        consumer = self.consumer
        assignment = consumer.assignment()
        if assignment:
            consumer.pause(assignment)  # again each time: a rebalance may have added some
        message = consumer.poll(timeout_s)
        if message is not None and message.error() is None:
            self._held.append(message)  # fetched before the pause: kept for the next take

    def _resume_all(self) -> None:
        parked = self._parked.keys
        assignment = [p for p in self.consumer.assignment() if (p.topic, p.partition) not in parked]
        if assignment:
            self.consumer.resume(assignment)

    # -- parked partitions: paused until the pipeline says so --------------------------------
    async def park(self, partitions: Sequence[PartitionId]) -> None:
        """Stop fetching ``partitions`` (the group keeps them; the others run on) until
        ``unpark``; records of them held or taken meanwhile are the pipeline's to drop."""
        await self.in_thread(self._parked.park, self.consumer, list(partitions), self.spec.name)

    async def unpark(self, positions: dict[PartitionId, int]) -> None:
        """Fetch parked partitions again, each from its position in ``positions``."""
        await self.in_thread(self._unpark, positions)

    def _unpark(self, positions: dict[PartitionId, int]) -> None:
        self._seek(positions)
        self._parked.unpark(self.consumer, positions)

    @property
    def parked(self) -> frozenset[PartitionId]:
        return frozenset(self._parked.keys)

    # -- positions ----------------------------------------------------------------------------
    async def seek(self, positions: dict[PartitionId, int]) -> None:
        """Rewind partitions to ``positions`` (records held for the next take are dropped:
        they are read again from there)."""
        await self.in_thread(self._seek, positions)

    def _seek(self, positions: dict[PartitionId, int]) -> None:
        self._held = [m for m in self._held if (m.topic(), m.partition()) not in positions]
        owned = set(self.assignment())
        for (topic, partition), offset in positions.items():
            if (topic, partition) in owned:  # a revoked one starts over on its next owner
                self.consumer.seek(TopicPartition(topic, partition, offset))

    async def commit(self) -> None:
        """Commit Kafka offsets of everything taken so far (after its outputs are safe)."""
        await self.in_thread(commit_or_defer, self.consumer, self.spec.name)

    async def watermarks(self, partitions: Sequence[PartitionId]) -> dict[PartitionId, int]:
        """High watermarks of ``partitions`` (the end of each log as the broker sees it)."""
        return await self.in_thread(high_watermarks, self.consumer, list(partitions))

    def assignment(self) -> list[PartitionId]:
        """The partitions this member owns now (call from the consumer's thread)."""
        return owned_partitions(self.consumer)

    # -- subscription and rebalances (the consumer's thread) -----------------------------------
    def _subscribe(self) -> None:
        self._subscribed_at = time.monotonic()
        self.consumer.subscribe(
            list(self.spec.topics), on_assign=self._assign, on_revoke=self._revoke
        )

    def _recreate(self) -> None:
        old = self._consumer
        self._held = []
        self._parked.keys.clear()
        if old is not None:
            try:
                old.close()
            except KafkaException as exc:
                log.warning("%s: closing the failed consumer: %s", self.spec.name, exc)
        self._consumer = Consumer(self._config)
        self.recreated += 1
        self._subscribe()

    def _resubscribe_if_never_assigned(self) -> None:
        if self.assigned_once or time.monotonic() - self._subscribed_at < RESUBSCRIBE_AFTER_S:
            return
        log.warning(
            "%s: no partition assigned %.0f s after subscribing to %s; subscribing again",
            self.spec.name,
            RESUBSCRIBE_AFTER_S,
            ", ".join(self.spec.topics),
        )
        self.consumer.unsubscribe()
        self._subscribe()

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned_once = True
        keys = [(p.topic, p.partition) for p in partitions]
        if self._start_positions is not None:
            starts = resolve_on_loop(self._start_positions(keys), self._loop, self.spec.name)
            for partition in partitions:
                partition.offset = starts.get((partition.topic, partition.partition), OFFSET_STORED)
        consumer.assign(partitions)
        log.info(
            "%s: assigned %s",
            self.spec.name,
            ", ".join(f"{p.topic}[{p.partition}]@{_offset_text(p.offset)}" for p in partitions)
            or "nothing",
        )
        if self._on_assigned is not None:
            self._on_assigned(keys)

    def _revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = [(p.topic, p.partition) for p in partitions]
        self._held = [m for m in self._held if (m.topic(), m.partition()) not in keys]
        self._parked.keys.difference_update(keys)  # a new assignment starts unpaused
        self._revoked.update(keys)
        if self._on_revoked is not None:
            self._on_revoked(keys)
        consumer.unassign()


def owned_partitions(consumer: Consumer) -> list[PartitionId]:
    """The partitions ``consumer`` owns now (call from the consumer's thread)."""
    return [(tp.topic, tp.partition) for tp in consumer.assignment()]


class ParkedPartitions:
    """Partitions a pipeline parked (``ConsumerRuntime.park``): paused until it unparks
    them; no ``hold`` resumes them. Called on the consumer's thread."""

    def __init__(self) -> None:
        self.keys: set[PartitionId] = set()

    def park(self, consumer: Consumer, partitions: list[PartitionId], name: str) -> None:
        owned = set(owned_partitions(consumer))
        wanted = [key for key in partitions if key in owned and key not in self.keys]
        if wanted:
            consumer.pause([TopicPartition(t, p) for t, p in wanted])
            self.keys.update(wanted)
            log.info("%s: parked %s", name, ", ".join(f"{t}[{p}]" for t, p in wanted))

    def unpark(self, consumer: Consumer, positions: dict[PartitionId, int]) -> None:
        owned = set(owned_partitions(consumer))
        resumed = [key for key in positions if key in self.keys and key in owned]
        self.keys.difference_update(positions)
        if resumed:
            consumer.resume([TopicPartition(t, p) for t, p in resumed])


@dataclass
class TakeWindow:
    """When one take stops fetching.

    Without ``until``: one fetch, to the end of the window (``deadline``). With ``until``, set
    by a pipelined pipeline once its previous batch is written, the take goes on fetching and
    converting in slices until then, so the next batch holds what arrived during that write,
    already decoded: taken at the write's start instead, a record arriving during a write
    waited for two more writes, not one. Any other call for the consumer's thread (``hold``,
    ``park``, ``seek``: ``waiting_callers``) ends such a take early, so a write that needs the
    thread cannot wait on a take that waits on it; and it waits at most ``TAKE_UNTIL_MAX_S``
    past the window.
    """

    deadline: float
    until: threading.Event | None
    waiting_callers: Callable[[], int]
    last_fetch: float = 0.0

    def next_wait(self, *, first: bool, have: bool) -> float | None:
        """How long the next fetch may wait; None when the take is complete."""
        now = time.monotonic()
        remaining = max(0.0, self.deadline - now)
        until = self.until
        if until is None:
            return remaining if first else None
        if not first and self.waiting_callers():
            return None
        if not until.is_set() and now < self.deadline + TAKE_UNTIL_MAX_S:
            return TAKE_SLICE_S  # the write goes on: keep fetching
        if not first and (have or not remaining):
            return None
        return min(remaining, TAKE_SLICE_S)


def fetch_batch(
    consumer: Consumer,
    spec: ConsumerSpec,
    held: list[Message],
    convert: Callable[[Message], T],
    window: TakeWindow,
    revoked: set[PartitionId],
) -> TakenRecords[T]:
    """``held`` and what ``window`` lets fetch (up to ``spec.max_records`` records in all),
    converted slice by slice.

    A rebalance during a fetch (its callback adds to ``revoked``) ends the take, and what the
    take converted before that fetch of the revoked partitions is dropped: a partition
    assigned again restarts at the pipeline's stored position, and one batch must not hold
    its records of the old and of the new assignment (librdkafka drops the outdated records
    of the fetch that served the rebalance itself)."""
    taken: TakenRecords[T] = TakenRecords(spec.name)
    taken.add(held, convert)
    fetched, first = len(held), True
    while taken.fatal is None and fetched < spec.max_records:
        wait_s = window.next_wait(first=first, have=bool(taken.records))
        if wait_s is None:
            break
        first = False
        fresh = consumer.consume(num_messages=spec.max_records - fetched, timeout=wait_s)
        window.last_fetch = time.monotonic()
        fetched += len(fresh)
        rebalanced = bool(revoked)
        if rebalanced:
            taken.drop(revoked)
        taken.add(fresh, convert)
        if rebalanced:
            break
    return taken


@dataclass
class TakenRecords(Generic[T]):
    """One take's converted records with the partition of each, the last offset handed out
    per partition, and the first fatal error (the records before it are kept)."""

    name: str
    records: list[T] = field(default_factory=list)
    partitions: list[PartitionId] = field(default_factory=list)
    handed: dict[PartitionId, int] = field(default_factory=dict)
    fatal: KafkaError | None = None

    def add(self, messages: list[Message], convert: Callable[[Message], T]) -> None:
        """Convert ``messages`` up to the first fatal error; other errors are logged."""
        for message in messages:
            error = message.error()
            if error is None:
                key = (message.topic() or "", message.partition() or 0)
                self.records.append(convert(message))
                self.partitions.append(key)
                self.handed[key] = message.offset() or 0
            elif error.fatal():
                self.fatal = error
                return
            elif error.code() not in _QUIET_ERRORS:
                log.warning("%s: consume error: %s", self.name, error)

    def drop(self, partitions: set[PartitionId]) -> None:
        """Forget what was taken of ``partitions``."""
        kept = [
            (key, record)
            for key, record in zip(self.partitions, self.records, strict=True)
            if key not in partitions
        ]
        self.partitions = [key for key, _ in kept]
        self.records = [record for _, record in kept]
        for key in partitions:
            self.handed.pop(key, None)


def commit_or_defer(consumer: Consumer, name: str) -> None:
    """Commit the stored offsets; a broker restarting or the group rebalancing under us
    defers it: delivery is at least once and the outputs idempotent, so the next owner's or
    the next batch's commit covers this one."""
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        error = exc.args[0]
        if not error.retriable() and error.code() not in _GROUP_CHURN:
            raise
        log.warning("%s: commit deferred to the next batch: %s", name, error)


def high_watermarks(consumer: Consumer, partitions: list[PartitionId]) -> dict[PartitionId, int]:
    """The end of each partition's log as the broker sees it."""
    ends = {}
    for topic, partition in partitions:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        ends[(topic, partition)] = high
    return ends


def resolve_on_loop(
    starts: dict[PartitionId, int] | Awaitable[dict[PartitionId, int]],
    loop: asyncio.AbstractEventLoop | None,
    name: str,
) -> dict[PartitionId, int]:
    """A start-position source may be async (a database): run it on the pipeline's loop
    (this runs in the consumer's thread, inside librdkafka's assignment callback)."""
    if not inspect.isawaitable(starts):
        return starts
    if loop is None:
        raise RuntimeError(f"{name}: async start positions need a started runtime")
    return asyncio.run_coroutine_threadsafe(_awaited(starts), loop).result()


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _same(message: Message) -> Message:
    return message


def _offset_text(offset: int) -> str:
    return {OFFSET_BEGINNING: "beginning", OFFSET_STORED: "committed"}.get(offset, str(offset))
