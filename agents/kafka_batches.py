"""A confluent-kafka consumer driven from asyncio: batches in, offsets committed after.

For agents whose outputs are idempotent (Kafka topics with versioned records, Redis
evictions): at-least-once is enough, so Kafka's own committed offsets are used, committed
only after the batch's outputs were acknowledged. The blocking client runs in one thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from serdes.dead_letters import RecordOrigin

log = logging.getLogger("bitvelocity.agents")
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
T = TypeVar("T")


def assign_at(consumer: Consumer, partitions: list[TopicPartition]) -> None:
    """Assign ``partitions`` at the offsets already set on them, and say where (the log line
    operators read to see where a worker resumed after a crash or a rebalance)."""
    consumer.assign(partitions)
    log.info(
        "assigned %s",
        ", ".join(f"{p.topic}[{p.partition}]@{p.offset}" for p in partitions) or "nothing",
    )


def revoke_claims(
    claims: dict[tuple[str, int], Any], consumer: Consumer, partitions: list[TopicPartition]
) -> None:
    """Forget the positions held for revoked ``partitions`` and unassign them."""
    for partition in partitions:
        claims.pop((partition.topic, partition.partition), None)
    consumer.unassign()


def origin_of(message: Message) -> RecordOrigin:
    consumed = cast(list[tuple[str, bytes | str | None]], message.headers() or [])
    headers = tuple(
        (name, value if isinstance(value, bytes) else (value or "").encode())
        for name, value in consumed
    )
    return RecordOrigin(
        message.topic() or "",
        message.partition() or 0,
        message.offset() or 0,
        message.key(),
        message.value(),
        headers,
    )


class KafkaBatches:
    """Subscribe, ``take`` batches, ``commit`` what was taken; ``start()``/``stop()``."""

    def __init__(
        self,
        bootstrap_servers: str,
        group_id: str,
        topics: Sequence[str],
        *,
        max_records: int,
        max_ms: int,
        name: str,
    ) -> None:
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 20,
            "session.timeout.ms": 10000,
            "topic.metadata.refresh.interval.ms": 3000,
        }
        self._topics = list(topics)
        self._max_records = max_records
        self._max_s = max_ms / 1000
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._consumer: Consumer | None = None

    async def in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """Run blocking Kafka work on this consumer's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def start(self) -> None:
        self._consumer = Consumer(self._config)
        await self.in_thread(self._consumer.subscribe, self._topics)

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await self.in_thread(consumer.close)
        self._executor.shutdown(wait=True)

    async def take(self) -> list[Message]:
        """Up to ``max_records`` records or ``max_ms`` of waiting, errors logged and dropped."""
        return await self.in_thread(self._take)

    def _take(self) -> list[Message]:
        assert self._consumer is not None
        messages = self._consumer.consume(num_messages=self._max_records, timeout=self._max_s)
        records = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(message)
            elif error.code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                log.warning("consume error on %s: %s", self._topics, error)
        return records

    async def commit(self) -> None:
        """Commit the positions of everything taken so far (after its outputs are safe)."""
        await self.in_thread(self._commit)

    def _commit(self) -> None:
        assert self._consumer is not None
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0]
            if not error.retriable() and error.code() not in _GROUP_CHURN:
                raise
            # A broker restarting ("coordinator load in progress") or the group rebalancing
            # under us (assignment lost, generation changed): delivery is at least once and
            # outputs are idempotent, so the next owner's or next batch's commit covers this.
            log.warning("commit on %s deferred to the next batch: %s", self._topics, error)
