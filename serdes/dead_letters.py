"""Dead letters: records we cannot decode or validate, kept byte for byte in ``<topic>.dlq``.

The pure part builds the dead letter (origin bytes untouched, headers of DESIGN.md section
4); ``DeadLetterPublisher`` produces it with an idempotent confluent-kafka producer and
counts it in ``bv_dlq_records_total``. A dead letter is only "sent" once the broker
acknowledged it (``flush``), so a caller commits its offset after that, never before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from config.errors import TransientError
from observability.metrics import default_metrics
from quality.redaction import redact_text

ERROR_CLASS = "bv.error.class"
ERROR_MESSAGE = "bv.error.message"
ORIGIN_TOPIC = "bv.origin.topic"
ORIGIN_PARTITION = "bv.origin.partition"
ORIGIN_OFFSET = "bv.origin.offset"
SCHEMA_ID = "bv.schema.id"
REPLAY_OF = "bv.replay.of"
DLQ_SUFFIX = ".dlq"
_MAX_MESSAGE = 1000


@dataclass(frozen=True, slots=True)
class RecordOrigin:
    """Where a consumed record came from, and its bytes exactly as consumed."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record ready for the dead-letter topic."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    reason: str


def dlq_topic(origin_topic: str, suffix: str = DLQ_SUFFIX) -> str:
    return f"{origin_topic}{suffix}"


def dead_letter(
    origin: RecordOrigin,
    error: BaseException,
    schema_id: int | None = None,
    suffix: str = DLQ_SUFFIX,
) -> DeadLetter:
    """The dead letter of ``origin``: its own headers kept, ours (``bv.*``) added.

    The record's bytes stay untouched (a replay needs them), but the error message, which
    ``dlq show`` prints and may quote the record, has personal data masked.
    """
    reason = type(error).__name__
    ours: list[tuple[str, bytes]] = [
        (ERROR_CLASS, reason.encode()),
        (ERROR_MESSAGE, redact_text(str(error)[:_MAX_MESSAGE]).encode("utf-8", "replace")),
        (ORIGIN_TOPIC, origin.topic.encode()),
        (ORIGIN_PARTITION, str(origin.partition).encode()),
        (ORIGIN_OFFSET, str(origin.offset).encode()),
    ]
    if schema_id is not None:
        ours.append((SCHEMA_ID, str(schema_id).encode()))
    kept = tuple((k, v) for k, v in origin.headers if not k.startswith("bv.error."))
    return DeadLetter(
        dlq_topic(origin.topic, suffix), origin.key, origin.value, (*kept, *ours), reason
    )


def header(headers: Sequence[tuple[str, bytes | None]] | None, name: str) -> str | None:
    """The last value of header ``name`` as text, or None."""
    found = None
    for key, value in headers or ():
        if key == name and value is not None:
            found = value.decode("utf-8", "replace")
    return found


class DeadLetterPublisher:
    """Produces dead letters; ``start()``/``stop()``, or use as a (async) context manager."""

    def __init__(self, bootstrap_servers: str, *, flush_timeout_s: float = 10.0) -> None:
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        }
        self._flush_timeout_s = flush_timeout_s
        self._producer: Producer | None = None
        self._failures: list[str] = []
        self.published = 0

    def start(self) -> None:
        if self._producer is None:
            self._producer = Producer(self._config)

    def stop(self) -> None:
        if self._producer is not None:
            self._producer.flush(self._flush_timeout_s)
            self._producer = None

    def __enter__(self) -> DeadLetterPublisher:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def __aenter__(self) -> DeadLetterPublisher:
        self.start()
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failures.append(f"{message.topic()}: {error}")

    def publish(self, letter: DeadLetter) -> None:
        """Queue ``letter`` and count it; ``flush()`` confirms delivery."""
        if self._producer is None:
            raise RuntimeError("DeadLetterPublisher.publish before start()")
        self._producer.produce(
            letter.topic,
            value=letter.value,
            key=letter.key,
            headers=list(letter.headers),
            on_delivery=self._on_delivery,
        )
        self._producer.poll(0)
        origin = letter.topic.removesuffix(DLQ_SUFFIX)
        default_metrics().record_dlq(origin, letter.reason)
        self.published += 1

    def flush(self) -> None:
        """Block until every queued dead letter is acknowledged; else ``TransientError``."""
        if self._producer is None:
            return
        remaining = self._producer.flush(self._flush_timeout_s)
        failures, self._failures = self._failures, []
        if remaining or failures:
            raise TransientError(
                f"{remaining} dead letters unacknowledged after {self._flush_timeout_s} s, "
                f"failures: {failures[:3]}; is Kafka up? (`bitvelocity stack status`)"
            )
