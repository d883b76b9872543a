"""The analytics agent's decoding, in the consumer's thread: CDC changes and heartbeats.

A record the registry cannot serve yet waits for it (``RegistryWait``): it is retried with
backoff, never skipped, and the worker does not exit (I7; the 15-minute chaos run's
registry outage did exit it). Past the take's deadline, or when stopping, the error is
raised: the take is dropped and read again from the applied positions after a hold. A
record that cannot be decoded at all is skipped (the medallion sink dead-letters it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from confluent_kafka import Message

from config.errors import PermanentError, TransientError
from records.change_events import Decoded
from serdes.avro import AvroCodec
from serdes.consumer_step import Backoff
from serdes.debezium import DebeziumAvroDecoder

log = logging.getLogger("bitvelocity.analytics")
T = TypeVar("T")
#: (partition, topic, next offset, event or None when it cannot be decoded).
AppliedRecord = tuple[int, str, int, Any]


class DecodeCounts(Protocol):
    consumed: int
    undecodable: int


class RegistryWait:
    """Retries a decode while the schema registry is unavailable (a ``TransientError``)."""

    def __init__(self, backoff: Backoff, stopping: Callable[[], bool]) -> None:
        self._backoff = backoff
        self._stopping = stopping

    def until_decoded(self, decode: Callable[[], T], deadline: float) -> T:
        """``decode()``, again with backoff until ``deadline`` (monotonic) or a stop."""
        attempt = 0
        while True:
            try:
                return decode()
            except TransientError as exc:
                attempt += 1
                if self._stopping() or time.monotonic() >= deadline:
                    raise
                log.warning(
                    "analytics: decoding waits for the registry (%s); retry %d", exc, attempt
                )
                time.sleep(self._backoff.delay(attempt))


def record_converter(
    decoder: DebeziumAvroDecoder,
    codec: AvroCodec,
    *,
    heartbeats: str,
    stats: DecodeCounts,
    retry: RegistryWait,
    stall_s: float = 30.0,
) -> Callable[[Message], AppliedRecord]:
    """The conversion of one take's records; the registry may be away for ``stall_s``."""
    deadline = time.monotonic() + stall_s

    def convert(message: Message) -> AppliedRecord:
        topic, partition = message.topic() or "", message.partition() or 0
        offset = message.offset() or 0
        stats.consumed += 1
        try:
            event: datetime | Decoded | None
            if topic == heartbeats:
                value = message.value()
                event = retry.until_decoded(lambda: heartbeat_time(codec, value), deadline)
            else:
                key, value = message.key(), message.value()
                event = retry.until_decoded(lambda: decoder.decode(key, value), deadline)
        except PermanentError as exc:
            stats.undecodable += 1
            log.warning("analytics skipped %s[%d]@%s: %s", topic, partition, offset, exc)
            event = None
        return partition, topic, offset + 1, event

    return convert


def heartbeat_time(codec: AvroCodec, value: bytes | None) -> datetime:
    """The time a Debezium heartbeat record carries (it moves the event-time watermark)."""
    if value is None:
        raise PermanentError("heartbeat without a value")
    _, record = codec.decode(value)
    millis = record.get("ts_ms") if isinstance(record, dict) else None
    if millis is None:
        raise PermanentError(f"heartbeat without ts_ms: {record!r}")
    return datetime.fromtimestamp(int(millis) / 1000, UTC)
