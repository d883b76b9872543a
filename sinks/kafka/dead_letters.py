"""Produces dead letters to ``<topic>.dlq`` with an idempotent confluent-kafka producer.

Each is counted in ``bv_dlq_records_total``. A dead letter is only "sent" once the broker
acknowledged it (``flush``), so a caller commits its offset after that, never before.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from config.errors import TransientError
from observability.metrics import default_metrics
from serdes.dead_letters import DLQ_SUFFIX, DeadLetter


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
