"""Consumer lag per partition: committed offsets against the brokers' high watermarks.

Our committed offsets live in PostgreSQL (DESIGN.md section 5), so lag is computed here
rather than read from Kafka's group coordinator: ``compute_lag`` is pure, and
``read_watermarks`` asks the brokers for each partition's low and high watermark, and
``ask_watermarks`` does so on a thread and client of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from config.errors import TransientError


@dataclass(frozen=True, order=True)
class PartitionKey:
    """One partition of one topic."""

    topic: str
    partition: int


@dataclass(frozen=True)
class Watermarks:
    """The first (``low``) and next-to-be-written (``high``) offset of a partition."""

    low: int
    high: int


@dataclass(frozen=True)
class PartitionLag:
    """Records not yet committed on one partition."""

    topic: str
    partition: int
    lag: int


class LagUnavailableError(TransientError):
    """The brokers did not answer a watermark request in time."""


def compute_lag(
    committed: Mapping[PartitionKey, int], watermarks: Mapping[PartitionKey, Watermarks]
) -> list[PartitionLag]:
    """Lag of every partition with known watermarks, sorted by topic and partition.

    ``committed`` holds the next offset to consume (as stored in ``ops.consumer_offsets``).
    A partition without a committed offset lags by everything still retained
    (``high - low``). A committed offset below ``low`` (retention deleted records) counts
    from ``low``; lag is never negative, so a committed offset ahead of a stale high
    watermark reads as 0 rather than a nonsense value.
    """
    lags = []
    for key in sorted(watermarks):
        marks = watermarks[key]
        position = max(committed.get(key, marks.low), marks.low)
        lags.append(PartitionLag(key.topic, key.partition, max(0, marks.high - position)))
    return lags


def read_watermarks(
    consumer: Consumer, partitions: Iterable[PartitionKey], *, timeout_s: float = 5.0
) -> dict[PartitionKey, Watermarks]:
    """Low and high watermarks of ``partitions``, asked of the brokers (not cached), all
    within ``timeout_s``.

    ``consumer`` may be any confluent-kafka consumer; it need not be subscribed.
    """
    result = {}
    deadline = time.monotonic() + timeout_s
    for key in partitions:
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(key.topic, key.partition),
                timeout=max(0.001, deadline - time.monotonic()),
                cached=False,
            )
        except KafkaException as exc:
            raise LagUnavailableError(
                f"watermarks of {key.topic}[{key.partition}] unavailable: {exc}; "
                "check that Kafka is up (`bitvelocity stack status`)"
            ) from exc
        result[key] = Watermarks(low, high)
    return result


async def ask_watermarks(
    bootstrap_servers: str, partitions: list[PartitionKey], *, timeout_s: float = 2.0
) -> dict[PartitionKey, Watermarks]:
    """``read_watermarks`` with a client of its own, on a thread of its own.

    A pipeline's lag gauge must not wait on the pipeline's consumer: a broker under load
    answered the sink's 18 watermark requests in 0.5 to 2 s at times, and on the consumer's
    thread that held up the next batch (the sink's latency tail, decision 0022)."""
    return await asyncio.to_thread(_read_with_own_client, bootstrap_servers, partitions, timeout_s)


def _read_with_own_client(
    bootstrap_servers: str, partitions: list[PartitionKey], timeout_s: float
) -> dict[PartitionKey, Watermarks]:
    client = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "bitvelocity-lag"})
    try:
        return read_watermarks(client, partitions, timeout_s=timeout_s)
    finally:
        client.close()
