"""The consumer runtime's batch logic over a stand-in consumer (no broker).

A record fetched while the pipeline holds (paused, polling) is handed out by the next take,
never dropped; only records handed out have their offsets stored for a Kafka commit.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from streams.runtime import TAKE_UNTIL_MAX_S, ConsumerRuntime, ConsumerSpec, consumer_config


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, error: Any = None) -> None:
        self._where = (topic, partition, offset)
        self._error = error

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]

    def error(self) -> Any:
        return self._error


class FakeConsumer:
    def __init__(self, batches: list[list[FakeMessage]], polled: list[FakeMessage]) -> None:
        self.batches = batches
        self.polled = polled
        self.stored: list[tuple[str, int, int]] = []
        self.paused: list[TopicPartition] = []
        self.drained = threading.Event()
        self.resumed: list[TopicPartition] = []

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        return self.batches.pop(0) if self.batches else []

    def poll(self, timeout: float) -> FakeMessage | None:
        message = self.polled.pop(0) if self.polled else None
        if not self.polled:
            self.drained.set()  # ends ``hold``: every record to poll was polled
        return message

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t", 0)]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused.extend(partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.resumed.extend(partitions)

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        self.stored.extend((tp.topic, tp.partition, tp.offset) for tp in offsets)

    def close(self) -> None:
        self.closed = True


#: At most this long: ``hold`` ends once the stand-in consumer has nothing left to poll.
HOLD_S = 10.0


def runtime_over(consumer: FakeConsumer, *, own_positions: bool = False) -> ConsumerRuntime:
    spec = ConsumerSpec("test", "group", ("t",), max_records=100, max_wait_ms=1)
    runtime = ConsumerRuntime(
        "127.0.0.1:1", spec, start_positions=(lambda keys: {}) if own_positions else None
    )
    runtime._consumer = consumer  # type: ignore[assignment]
    runtime.assigned_once = True
    return runtime


async def test_a_record_polled_while_holding_comes_first_in_the_next_take() -> None:
    held = FakeMessage("t", 0, 7)
    consumer = FakeConsumer([[FakeMessage("t", 0, 8), FakeMessage("t", 0, 9)]], [held])
    runtime = runtime_over(consumer)
    await runtime.hold(HOLD_S, consumer.drained)
    assert [tp.partition for tp in consumer.paused][:1] == [0]
    assert [tp.partition for tp in consumer.resumed] == [0]
    taken = await runtime.take(lambda m: m.offset())
    assert taken == [7, 8, 9]
    await runtime.stop()


async def test_errors_are_dropped_and_only_handed_out_offsets_are_stored() -> None:
    eof = FakeMessage("t", 1, 0, KafkaError(KafkaError._PARTITION_EOF))
    consumer = FakeConsumer([[FakeMessage("t", 0, 3), eof, FakeMessage("t", 1, 5)]], [])
    runtime = runtime_over(consumer)
    assert await runtime.take(lambda m: (m.partition(), m.offset())) == [(0, 3), (1, 5)]
    assert sorted(consumer.stored) == [("t", 0, 4), ("t", 1, 6)]
    await runtime.stop()


async def test_a_pipeline_with_its_own_offset_store_stores_nothing_in_kafka() -> None:
    consumer = FakeConsumer([[FakeMessage("t", 0, 3)]], [])
    runtime = runtime_over(consumer, own_positions=True)
    assert await runtime.take(lambda m: m.offset()) == [3]
    assert consumer.stored == []
    await runtime.stop()


async def test_a_rewind_drops_held_records_of_the_rewound_partitions() -> None:
    consumer = FakeConsumer([], [FakeMessage("t", 0, 7), FakeMessage("t", 1, 2)])
    runtime = runtime_over(consumer)
    await runtime.hold(HOLD_S, consumer.drained)
    seeks: list[TopicPartition] = []
    consumer.seek = seeks.append  # type: ignore[attr-defined]
    await runtime.seek({("t", 0): 5})
    assert [(tp.partition, tp.offset) for tp in seeks] == [(0, 5)]
    assert await runtime.take(lambda m: (m.partition(), m.offset())) == [(1, 2)]
    await runtime.stop()


def test_every_pipeline_shares_one_consumer_configuration() -> None:
    spec = ConsumerSpec("x", "g", ("t",), max_records=1, max_wait_ms=1, static_member_id="g-1")
    config = consumer_config("host:1", spec)
    assert config["enable.auto.commit"] is False
    assert config["enable.auto.offset.store"] is False
    assert config["group.instance.id"] == "g-1"
    assert config["max.poll.interval.ms"] == 120_000
    # Even shares across topics; range still listed for members of an older version.
    assert config["partition.assignment.strategy"] == "roundrobin,range"
    # The prefetch queue is bounded well below librdkafka's 64 MB default (issue 23).
    assert config["queued.max.messages.kbytes"] == 8 * 1024
    assert config["queued.min.messages"] == 20_000
    assert "group.instance.id" not in consumer_config(
        "host:1", ConsumerSpec("x", "g", ("t",), max_records=1, max_wait_ms=1)
    )


def test_a_conversion_stalls_at_most_a_quarter_of_the_poll_interval() -> None:
    """The consumer's thread does not poll while ``convert`` retries a record: the budget
    must stay well inside max.poll.interval.ms (20 s: 5 s), and 30 s at the default 120 s."""

    def spec(max_poll_interval_ms: int) -> ConsumerSpec:
        return ConsumerSpec(
            "x",
            "g",
            ("t",),
            max_records=1,
            max_wait_ms=1,
            max_poll_interval_ms=max_poll_interval_ms,
        )

    assert spec(120_000).convert_stall_s == 30.0
    assert spec(20_000).convert_stall_s == 5.0
    assert spec(15_000).convert_stall_s == 3.75
    assert spec(600_000).convert_stall_s == 30.0


async def test_a_parked_partition_stays_paused_through_a_hold_until_unparked_at_its_position() -> (
    None
):
    consumer = FakeConsumer([], [])
    runtime = runtime_over(consumer)
    seeks: list[TopicPartition] = []
    consumer.seek = seeks.append  # type: ignore[attr-defined]
    await runtime.park([("t", 0), ("t", 9)])  # ("t", 9) is not owned: nothing to pause
    assert [(tp.topic, tp.partition) for tp in consumer.paused] == [("t", 0)]
    assert runtime.parked == {("t", 0)}
    consumer.paused.clear()
    await runtime.hold(0.0)  # an outage waited out: the hold ends by resuming what it paused
    assert ("t", 0) not in {(tp.topic, tp.partition) for tp in consumer.resumed}
    await runtime.unpark({("t", 0): 42})
    assert [(tp.partition, tp.offset) for tp in seeks] == [(0, 42)]
    assert [(tp.topic, tp.partition) for tp in consumer.resumed] == [("t", 0)]
    assert runtime.parked == frozenset()


class SlicedConsumer(FakeConsumer):
    """Hands out one batch per fetch and, at the ``write_done_at``-th fetch, ends the
    pipeline's write (sets ``written``)."""

    def __init__(self, batches: list[list[FakeMessage]], written: threading.Event, at: int):
        super().__init__(batches, [])
        self.written = written
        self.write_done_at = at
        self.fetches = 0

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        self.fetches += 1
        if self.fetches == self.write_done_at:
            self.written.set()
        return super().consume(num_messages, timeout)


async def test_a_take_until_the_write_ends_holds_what_arrived_during_the_write() -> None:
    written = threading.Event()
    batches = [[FakeMessage("t", 0, offset)] for offset in range(5)]
    consumer = SlicedConsumer(batches, written, at=3)
    runtime = runtime_over(consumer)  # a 1 ms window: without ``until``, one fetch
    taken = await runtime.take(lambda m: m.offset(), until=written)
    assert taken == [0, 1, 2]  # fetched on past the window, until the write ended
    assert consumer.fetches == 3
    assert await runtime.take(lambda m: m.offset()) == [3]  # one fetch: the window is over
    await runtime.stop()


async def test_a_take_waiting_for_a_write_makes_way_for_another_call() -> None:
    # A write that parks a partition needs the consumer's thread while the next take
    # waits for that very write to end: the take must give way, not deadlock.
    never = threading.Event()
    consumer = SlicedConsumer([[FakeMessage("t", 0, 1)]], never, at=0)
    runtime = runtime_over(consumer)
    taking = asyncio.ensure_future(runtime.take(lambda m: m.offset(), until=never))
    await asyncio.sleep(0.05)
    assert not taking.done()  # still waiting for the write
    await asyncio.wait_for(runtime.park([("t", 0)]), timeout=5)
    assert await asyncio.wait_for(taking, timeout=5) == [1]
    assert not never.is_set()
    await runtime.stop()


async def test_a_take_waits_for_a_write_at_most_a_bounded_time() -> None:
    never = threading.Event()
    consumer = SlicedConsumer([[FakeMessage("t", 0, 1)]], never, at=0)
    runtime = runtime_over(consumer)
    started = time.monotonic()
    taken = await asyncio.wait_for(runtime.take(lambda m: m.offset(), until=never), timeout=10)
    assert taken == [1]
    assert time.monotonic() - started >= TAKE_UNTIL_MAX_S
    await runtime.stop()
