"""What a test run leaves behind on a long-lived stack: topics, subjects, connectors, slots,
databases. ``snapshot_objects`` lists them (five cheap calls: one Kafka metadata request,
two REST calls, one SQL query); ``wait_for_no_leftovers`` compares with a snapshot taken
before, polling a short while because Kafka and Connect finish deletions asynchronously.

Objects the stack makes by itself on first use (the consumer offsets and transaction state
topics), and the product's own fixed-name topics and subjects that any worker creates on
start (``openlineage``, ``hourly-revenue``, ``product-updates-value``, ...) are shared, not
a test's leftovers, and are ignored; so are the topics and subjects of the product's own
connector (``bitvelocity.*``), which the demo and the dashboard test keep registered.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, fields

import httpx
from confluent_kafka.admin import AdminClient

from config.settings import Settings
from serdes import own_schemas
from serdes.registry import RegistryClient
from sinks.postgres.connection import connect

#: Created by Kafka when first needed, by whichever client comes first.
BROKER_INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})


@dataclass(frozen=True)
class StackObjects:
    topics: frozenset[str]
    subjects: frozenset[str]
    connectors: frozenset[str]
    slots: frozenset[str]
    databases: frozenset[str]

    def added_since(self, before: StackObjects) -> dict[str, list[str]]:
        """Per kind, the names present now and not in ``before`` (empty kinds omitted)."""
        added = {
            f.name: sorted(getattr(self, f.name) - getattr(before, f.name)) for f in fields(self)
        }
        return {kind: names for kind, names in added.items() if names}


async def _postgres_objects(settings: Settings) -> tuple[frozenset[str], frozenset[str]]:
    connection = await connect(settings.postgres, "postgres")
    try:
        slots = await connection.fetch("SELECT slot_name FROM pg_replication_slots")
        databases = await connection.fetch(
            "SELECT datname FROM pg_database WHERE NOT datistemplate"
        )
    finally:
        await connection.close()
    return frozenset(r["slot_name"] for r in slots), frozenset(r["datname"] for r in databases)


def shared_names(settings: Settings) -> tuple[frozenset[str], frozenset[str]]:
    """The product's fixed topic names (TopicSettings) and its own value subjects."""
    topics = settings.topics
    fixed = {v for v in topics.model_dump().values() if isinstance(v, str)}
    fixed -= {topics.cdc_prefix, topics.dlq_suffix}
    fixed.add(own_schemas.ORDER_EVENTS_TOPIC)
    return frozenset(fixed | BROKER_INTERNAL_TOPICS), frozenset(own_schemas.subjects(settings))


def production_capture(settings: Settings, name: str) -> bool:
    """A topic or subject of the product's own connector (``bitvelocity.public.orders``,
    its subjects, DLQs, transaction and heartbeat topics): the demo and the dashboard test
    register it on purpose, and it creates these whenever the OLTP tables change."""
    prefix = settings.topics.cdc_prefix
    return name.startswith(f"{prefix}.") or name == f"__debezium-heartbeat.{prefix}"


def snapshot_objects(settings: Settings) -> StackObjects:
    shared_topics, shared_subjects = shared_names(settings)
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    listed = frozenset(admin.list_topics(timeout=10).topics) - shared_topics
    topics = frozenset(t for t in listed if not production_capture(settings, t))
    with RegistryClient(settings.registry) as registry:
        subjects = (
            frozenset(s for s in registry.subjects() if not production_capture(settings, s))
            - shared_subjects
        )
    response = httpx.get(f"{settings.connect.url}/connectors", timeout=10)
    response.raise_for_status()
    slots, databases = asyncio.run(_postgres_objects(settings))
    return StackObjects(topics, subjects, frozenset(response.json()), slots, databases)


def wait_for_no_leftovers(
    settings: Settings, before: StackObjects, *, timeout_s: float = 20.0
) -> dict[str, list[str]]:
    """What was added since ``before`` and is still there after ``timeout_s`` (empty: clean)."""
    deadline = time.monotonic() + timeout_s
    while True:
        added = snapshot_objects(settings).added_since(before)
        if not added or time.monotonic() > deadline:
            return added
        time.sleep(0.5)
