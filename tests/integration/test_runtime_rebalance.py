"""A rebalance in the middle of a take, against the real broker.

A pipelined pipeline takes its next batch while it writes the current one, fetching until the
write ends (``take(until=)``), so a take can span a rebalance. Invariant: the batch a take
hands out holds no record that the member fetched under an assignment the rebalance revoked.
A revoked partition belongs to another member now, or restarts at the pipeline's stored
position; a batch that mixed both would write a partition it no longer owns, or write its
records twice (issue #18: the second-worker fault test failed on exactly that).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time

from confluent_kafka.admin import AdminClient

from config.settings import Settings
from streams.runtime import ConsumerRuntime, ConsumerSpec, PartitionId
from tests.kafka_io import create_topic, produce

RECORDS = 400
#: Long enough that only the rebalance can end the first member's take.
WINDOW_MS = 60_000


def starts_at_zero(keys: list[PartitionId]) -> dict[PartitionId, int]:
    """A pipeline that has stored nothing yet: every assignment starts at the beginning."""
    return dict.fromkeys(keys, 0)


async def keep_taking(runtime: ConsumerRuntime, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await runtime.take(lambda message: message.offset())


async def test_a_take_spanning_a_rebalance_hands_out_nothing_of_the_old_assignment(
    settings: Settings,
) -> None:
    bootstrap = settings.kafka.bootstrap_servers
    topic = f"bv-test-rebalance-{secrets.token_hex(3)}"
    group = f"bv-test-rebalance-{secrets.token_hex(3)}"
    create_topic(bootstrap, topic, partitions=2)
    produce(bootstrap, topic, [(f"key-{n}".encode(), b"value") for n in range(RECORDS)])
    assigned = threading.Event()  # set on the consumer's thread
    revoked: list[PartitionId] = []

    def spec(name: str, window_ms: int) -> ConsumerSpec:
        return ConsumerSpec(name, group, (topic,), max_records=100_000, max_wait_ms=window_ms)

    first = ConsumerRuntime(
        bootstrap,
        spec("first", WINDOW_MS),
        start_positions=starts_at_zero,
        on_assigned=lambda keys: assigned.set(),
        on_revoked=revoked.extend,
    )
    try:
        async with first:
            never = threading.Event()  # the write it waits for never ends
            started = time.monotonic()
            taking = asyncio.ensure_future(
                first.take(lambda m: (m.partition() or 0, m.offset() or 0), until=never)
            )
            assert await asyncio.to_thread(assigned.wait, 30), "the first member got nothing"
            await asyncio.sleep(2)  # the take has fetched both partitions by now
            second = ConsumerRuntime(bootstrap, spec("second", 200), start_positions=starts_at_zero)
            stop = asyncio.Event()
            async with second:
                joining = asyncio.ensure_future(keep_taking(second, stop))
                taken = await asyncio.wait_for(taking, timeout=WINDOW_MS / 1000)
                stop.set()
                await joining
            took_s = time.monotonic() - started
            owned = set(await first.in_thread(first.assignment))
    finally:
        _delete_topic(bootstrap, topic)
    assert revoked, "no rebalance happened during the take"
    assert took_s < WINDOW_MS / 1000, "the rebalance did not end the take"
    assert {(topic, partition) for partition, _ in taken} <= owned, (
        "the take handed out records of a partition revoked from this member"
    )
    for partition in {partition for partition, _ in taken}:
        offsets = [offset for p, offset in taken if p == partition]
        assert offsets == sorted(set(offsets)), f"partition {partition} taken twice: {offsets}"


def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics([topic]).values():
        with contextlib.suppress(Exception):
            future.result(timeout=15)
