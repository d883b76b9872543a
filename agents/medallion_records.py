"""Consumed records of the medallion sink: decoded (or dead letters), grouped by partition.

Decoding runs in the consumer's thread (``ConsumerRuntime.take``); a registry fault is
retried on the same record until a deadline, an undecodable record becomes a dead letter,
and a change of a table without a silver table is a dead letter too. Dead letters are
flushed to Kafka before the batch's offsets move past them.
"""

from __future__ import annotations

from confluent_kafka import Message

from config.errors import PermanentError
from observability.logging import trace_id_from_headers
from records.change_events import ChangeEvent
from serdes.consumer_step import Backoff, decode_with_retry
from serdes.dead_letters import DeadLetter, RecordOrigin, dead_letter
from serdes.debezium import DebeziumAvroDecoder
from serdes.plain_events import PlainEventDecoder
from sinks.kafka.dead_letters import DeadLetterPublisher
from sinks.postgres.batch import ConsumedRecord
from sinks.postgres.tables import TABLES
from streams.runtime import origin_of

CORRELATION_COLUMN = "last_correlation_id"


def by_partition(records: list[ConsumedRecord]) -> list[list[ConsumedRecord]]:
    """A take's records grouped per partition, each group in offset order."""
    groups: dict[tuple[str, int], list[ConsumedRecord]] = {}
    for record in records:
        key = (record.topic, record.partition)
        group = groups.get(key)
        if group is None:
            groups[key] = [record]
        else:
            group.append(record)
    return list(groups.values())


def decode_cdc_record(
    decoder: DebeziumAvroDecoder, message: Message, backoff: Backoff, deadline: float
) -> ConsumedRecord:
    """One consumed CDC record, decoded (transient registry faults retried until
    ``deadline``) or made a dead letter; a table without a silver table is a dead letter."""
    origin = origin_of(message)
    decoded = decode_with_retry(decoder.decode, origin, backoff=backoff, deadline=deadline)
    if isinstance(decoded, ChangeEvent) and decoded.table not in TABLES:
        decoded = _unknown_table(origin, decoded)
    return ConsumedRecord(
        origin.topic,
        origin.partition,
        origin.offset,
        decoded,
        trace_id_from_headers(origin.headers) or _row_correlation_id(decoded),
        origin,
    )


def decode_event_record(
    decoder: PlainEventDecoder, message: Message, backoff: Backoff, deadline: float
) -> ConsumedRecord:
    """One consumed record of an event topic, decoded (transient registry faults retried
    until ``deadline``) or made a dead letter."""
    origin = origin_of(message)
    decoded = decode_with_retry(decoder.decode, origin, backoff=backoff, deadline=deadline)
    return ConsumedRecord(
        origin.topic,
        origin.partition,
        origin.offset,
        decoded,
        trace_id_from_headers(origin.headers),
        origin,
    )


class UnknownTableError(PermanentError):
    """A change of a table the medallion pipeline has no silver table for."""


def _unknown_table(origin: RecordOrigin, event: ChangeEvent) -> DeadLetter:
    return dead_letter(
        origin,
        UnknownTableError(f"no silver table for {event.schema}.{event.table}"),
        event.schema_id,
    )


def _row_correlation_id(decoded: object) -> str | None:
    """The OLTP transaction's correlation id, stamped on the row by oltp migration 0003."""
    if isinstance(decoded, ChangeEvent) and decoded.after is not None:
        value = decoded.after.get(CORRELATION_COLUMN)
        return value if isinstance(value, str) else None
    return None


def publish_dead_letters(publisher: DeadLetterPublisher, letters: list[DeadLetter]) -> None:
    for letter in letters:
        publisher.publish(letter)
    publisher.flush()  # acknowledged before the offset moves past them
