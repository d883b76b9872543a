"""After a warehouse restore: can the sink replay from the restored offsets?

The restored ``ops.consumer_offsets`` say where each partition resumes. Kafka still holds
those records only when every restored offset is at or above the partition's log start
(the retention edge). A partition below it lost records for good: they must come back from
the source (a new Debezium snapshot), not from Kafka. See README "Backup and recovery".
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from config.settings import Settings
from sinks.postgres.connection import connect


@dataclass(frozen=True)
class RetentionGap:
    topic: str
    partition: int
    resume_at: int
    log_start: int

    @property
    def lost(self) -> int:
        return self.log_start - self.resume_at


def gaps(
    resume: dict[tuple[str, int], int], log_start: dict[tuple[str, int], int]
) -> list[RetentionGap]:
    """Partitions whose resume offset lies before the first record Kafka still holds."""
    return [
        RetentionGap(topic, partition, offset, log_start[(topic, partition)])
        for (topic, partition), offset in sorted(resume.items())
        if (topic, partition) in log_start and offset < log_start[(topic, partition)]
    ]


async def _resume_offsets(settings: Settings) -> dict[tuple[str, int], int]:
    connection = await connect(settings.postgres)
    try:
        rows = await connection.fetch(
            "SELECT topic, partition, next_offset FROM ops.consumer_offsets"
        )
        return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
    finally:
        await connection.close()


def retention_gaps(settings: Settings) -> list[RetentionGap]:
    """Compare the (restored) offsets table with Kafka's log start offsets."""
    resume = asyncio.run(_resume_offsets(settings))
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": "bv-retention-edge"}
    )
    log_start: dict[tuple[str, int], int] = {}
    try:
        for key in resume:
            try:
                log_start[key] = consumer.get_watermark_offsets(TopicPartition(*key), timeout=5)[0]
            except KafkaException:
                continue  # a topic deleted since: nothing to replay, nothing to compare
    finally:
        consumer.close()
    return gaps(resume, log_start)
