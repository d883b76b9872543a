"""OpenLineage run events (START and COMPLETE per sink batch job), published to a topic.

Pure event building plus a small fire-and-forget publisher: lineage is observability,
so a broker hiccup delays events (the producer retries) but never blocks or fails a batch.
Event shape: the OpenLineage 2-0-2 RunEvent (eventType, eventTime, run, job, inputs,
outputs, producer, schemaURL).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from confluent_kafka import Producer

PRODUCER_URI = "https://github.com/bitvelocity/streams"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
NAMESPACE = "bitvelocity"


@dataclass(frozen=True, slots=True)
class Dataset:
    namespace: str
    name: str


def run_event(
    event_type: str,
    *,
    run_id: uuid.UUID,
    job: str,
    at: datetime,
    inputs: Sequence[Dataset],
    outputs: Sequence[Dataset],
    facets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One OpenLineage RunEvent as a JSON-ready dict."""
    return {
        "eventType": event_type,
        "eventTime": at.isoformat(),
        "run": {"runId": str(run_id), "facets": facets or {}},
        "job": {"namespace": NAMESPACE, "name": job, "facets": {}},
        "inputs": [{"namespace": d.namespace, "name": d.name} for d in inputs],
        "outputs": [{"namespace": d.namespace, "name": d.name} for d in outputs],
        "producer": PRODUCER_URI,
        "schemaURL": SCHEMA_URL,
    }


def batch_events(
    *,
    job: str,
    batch_key: str,
    started: datetime,
    finished: datetime,
    inputs: Sequence[Dataset],
    outputs: Sequence[Dataset],
    counts: dict[str, int],
) -> list[dict[str, Any]]:
    """START and COMPLETE of one batch; the run id is stable for the batch (replays agree)."""
    run_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{job}/{batch_key}")
    facets = {"bitvelocity_batch": {"_producer": PRODUCER_URI, **counts}}
    return [
        run_event("START", run_id=run_id, job=job, at=started, inputs=inputs, outputs=outputs),
        run_event(
            "COMPLETE",
            run_id=run_id,
            job=job,
            at=finished,
            inputs=inputs,
            outputs=outputs,
            facets=facets,
        ),
    ]


class LineagePublisher:
    """Produces run events to a topic without waiting for acknowledgements."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.topic = topic
        self._producer = Producer(
            {"bootstrap.servers": bootstrap_servers, "linger.ms": 50, "acks": "1"}
        )

    def publish(self, events: Sequence[dict[str, Any]], key: str) -> None:
        for event in events:
            self._producer.produce(self.topic, key=key.encode(), value=orjson.dumps(event))
        self._producer.poll(0)

    def close(self, timeout_s: float = 5.0) -> None:
        self._producer.flush(timeout_s)
