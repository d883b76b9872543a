"""A commit refused because the group moved on is deferred, not fatal (found by the chaos run).

During a Kafka restart the cache agent's commit failed with ``_ASSIGNMENT_LOST`` and the whole
worker exited (I7). Delivery is at least once and the outputs idempotent, so such a commit is
left to the partition's next owner; a real error still raises.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.runtime import ConsumerRuntime, ConsumerSpec


class RefusingConsumer:
    def __init__(self, code: int, *, retriable: bool = False) -> None:
        self.error = KafkaError(code, retriable=retriable)
        self.commits = 0

    def commit(self, *, asynchronous: bool) -> None:
        self.commits += 1
        raise KafkaException(self.error)

    def close(self) -> None:
        pass


async def commit_over(consumer: RefusingConsumer) -> None:
    """``commit`` of a runtime over ``consumer``, then its thread ended."""
    runtime = batches_over(consumer)
    try:
        await runtime.commit()
    finally:
        await runtime.stop()


def batches_over(consumer: RefusingConsumer) -> ConsumerRuntime:
    spec = ConsumerSpec("test", "group", ("topic",), max_records=10, max_wait_ms=100)
    runtime = ConsumerRuntime("127.0.0.1:1", spec)
    runtime._consumer = consumer  # type: ignore[assignment]
    return runtime


@pytest.mark.parametrize(
    "code",
    [
        KafkaError._ASSIGNMENT_LOST,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,  # not flagged retriable after a restart
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
    ],
)
async def test_a_commit_refused_by_group_churn_is_deferred(code: int) -> None:
    consumer = RefusingConsumer(code)
    await commit_over(consumer)
    assert consumer.commits == 1


async def test_a_retriable_commit_error_is_deferred() -> None:
    consumer = RefusingConsumer(KafkaError.COORDINATOR_LOAD_IN_PROGRESS, retriable=True)
    await commit_over(consumer)
    assert consumer.commits == 1


async def test_a_commit_refused_for_another_reason_raises() -> None:
    consumer = RefusingConsumer(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        await commit_over(consumer)
