"""An isolated capture pipeline: own database, Debezium connector, slot, topic prefix, group.

Shared by the sink tests (``tests/integration/sink_env.py``) and the sink benchmark
(``bench/sink.py``), so both run against the same shape of pipeline the production
connector builds. Whatever ``pipeline_environment`` creates it removes again, also when the
block fails: the connector, then its replication slot (once Connect released it, or
PostgreSQL keeps WAL forever), the database, the topics and the consumer groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient

from admin.capture import (
    drop_slot_when_released,
    partition_high_watermarks,
    remove_capture_outputs,
)
from admin.connectors import ConnectClient, debezium_postgres_config, oltp_connector_spec
from config.errors import RegistryError
from config.settings import Settings
from oltp.loadgen import LoadgenResult
from oltp.schema import CAPTURED_TABLES, migrate_oltp
from serdes.registry import RegistryClient
from sinks.postgres.connection import connect
from sinks.postgres.warehouse import migrate_warehouse
from sinks.redis.feature_store import RedisFeatureStore

log = logging.getLogger("bitvelocity.pipeline_env")


@dataclass(frozen=True)
class PipelineNames:
    """How the resources of one kind of isolated pipeline are named (plus a run id)."""

    database: str  # e.g. "bv_sink_" -> database bv_sink_<run id>
    topic_prefix: str  # e.g. "bvsink" -> topics bvsink<run id>.public.<table>
    group: str  # e.g. "bv-test-" -> consumer group bv-test-<run id>-medallion
    connector: (
        str  # e.g. "bv-sink-" -> connector bv-sink-<run id>; its slot is named like the database
    )


SINK_TEST_NAMES = PipelineNames("bv_sink_", "bvsink", "bv-test-", "bv-sink-")
BENCH_NAMES = PipelineNames("bv_bench_", "bvbench", "bv-bench-", "bv-bench-")


@dataclass(frozen=True)
class SinkEnv:
    settings: Settings
    run_id: str

    @property
    def database(self) -> str:
        return self.settings.postgres.database

    @property
    def topics(self) -> list[str]:
        return [self.settings.topics.cdc_topic(t) for t in CAPTURED_TABLES]

    @property
    def group(self) -> str:
        return f"{self.settings.kafka.consumer_group}-medallion"

    def worker_env(self) -> dict[str, str]:
        """Environment for a `bitvelocity worker` subprocess on this pipeline."""
        return {
            "BV_POSTGRES__DATABASE": self.database,
            "BV_TOPICS__CDC_PREFIX": self.settings.topics.cdc_prefix,
            "BV_KAFKA__CONSUMER_GROUP": self.settings.kafka.consumer_group,
            "BV_SINK__BATCH_MAX_RECORDS": str(self.settings.sink.batch_max_records),
        }


def derive(
    base: Settings, run_id: str, batch_max_records: int, names: PipelineNames = SINK_TEST_NAMES
) -> Settings:
    return base.model_copy(
        update={
            "postgres": base.postgres.model_copy(update={"database": f"{names.database}{run_id}"}),
            "topics": base.topics.model_copy(
                update={"cdc_prefix": f"{names.topic_prefix}{run_id}"}
            ),
            "kafka": base.kafka.model_copy(update={"consumer_group": f"{names.group}{run_id}"}),
            "sink": base.sink.model_copy(update={"batch_max_records": batch_max_records}),
        }
    )


def with_analytics_outputs(env: SinkEnv) -> SinkEnv:
    """``env`` with the analytics outputs (topics, changelog, Redis prefix) named after the run.

    The derived topics share the CDC prefix, so ``pipeline_environment`` removes them too.
    """
    topics = env.settings.topics
    prefix = topics.cdc_prefix
    settings = env.settings.model_copy(
        update={
            "topics": topics.model_copy(
                update={
                    "hourly_revenue": f"{prefix}.hourly-revenue",
                    "customer_features": f"{prefix}.customer-features",
                    "late_events": f"{prefix}.late-events",
                    "analytics_state": f"{prefix}.analytics-state",
                }
            ),
            "features": env.settings.features.model_copy(
                update={
                    "redis_prefix": f"bv:{prefix}:features:customer:",
                    "idle_partition_after": timedelta(seconds=1),
                }
            ),
        }
    )
    return SinkEnv(settings, env.run_id)


@contextlib.contextmanager
def analytics_outputs(env: SinkEnv) -> Iterator[SinkEnv]:
    """``with_analytics_outputs(env)``; afterwards removes its registry subjects and Redis keys.

    Synchronous (it runs an event loop on exit): enter it outside ``asyncio.run``.
    """
    derived = with_analytics_outputs(env)
    try:
        yield derived
    finally:
        topics = derived.settings.topics
        delete_subjects(derived.settings, [topics.hourly_revenue, topics.customer_features])
        asyncio.run(delete_feature_keys(derived.settings))


async def delete_feature_keys(settings: Settings) -> None:
    """Delete the feature hashes under ``settings``' Redis prefix (one run's own keys)."""
    async with RedisFeatureStore(settings.redis, prefix=settings.features.redis_prefix) as store:
        await store.delete_all()


@contextlib.contextmanager
def pipeline_environment(
    base: Settings, *, batch_max_records: int = 200, names: PipelineNames = SINK_TEST_NAMES
) -> Iterator[SinkEnv]:
    """A migrated database captured by its own running connector, removed afterwards.

    Synchronous (it runs its own event loops): enter it outside ``asyncio.run``.
    """
    run_id = secrets.token_hex(3)
    settings = derive(base, run_id, batch_max_records, names)
    env = SinkEnv(settings, run_id)
    spec = oltp_connector_spec(
        settings, name=f"{names.connector}{run_id}", slot=f"{names.database}{run_id}"
    )
    try:
        asyncio.run(migrate_oltp(settings))
        asyncio.run(migrate_warehouse(settings))
        with ConnectClient(settings) as client:
            client.put(spec.name, debezium_postgres_config(settings, spec))
            client.wait_running(spec.name)
        yield env
    finally:
        with ConnectClient(settings) as client:
            client.delete(spec.name)
        asyncio.run(_drop(settings, spec.slot))
        # CDC, transaction and DLQ topics, the heartbeat topic, and all their subjects.
        remove_capture_outputs(settings, settings.topics.cdc_prefix)


async def _drop(settings: Settings, slot: str) -> None:
    admin = await connect(settings.postgres, "postgres")
    try:
        await drop_slot_when_released(admin, slot)
        await admin.execute(f'DROP DATABASE IF EXISTS "{settings.postgres.database}" WITH (FORCE)')
    finally:
        await admin.close()


def delete_subjects(settings: Settings, topics: Iterable[str]) -> None:
    """Remove the key and value subjects Debezium registered for ``topics`` (when present)."""
    with RegistryClient(settings.registry) as registry:
        for topic in topics:
            for side in ("key", "value"):
                try:
                    registry.delete_subject(f"{topic}-{side}")
                except RegistryError as exc:  # never registered; or a leftover, not a failure
                    log.debug("subject %s-%s not deleted: %s", topic, side, exc)


def delete_consumer_groups(bootstrap: str, groups: Iterable[str]) -> list[str]:
    """Delete ``groups`` from the broker; returns those deleted (unknown ones are skipped)."""
    wanted = sorted(set(groups))
    if not wanted:
        return []
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deleted: list[str] = []
    for group, future in admin.delete_consumer_groups(wanted, request_timeout=10).items():
        try:
            future.result(timeout=15)
            deleted.append(group)
        except KafkaException as exc:  # never joined (assign-only readers) or already gone
            log.debug("consumer group %s not deleted: %s", group, exc)
    return deleted


# -- watching the capture ------------------------------------------------------------------
def high_watermarks(
    env: SinkEnv, topics: Iterable[str] | None = None
) -> dict[tuple[str, int], int]:
    """``(topic, partition) -> high watermark`` of the pipeline's CDC topics (or ``topics``)."""
    bootstrap = env.settings.kafka.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"oracle-{env.run_id}"})
    try:
        return partition_high_watermarks(consumer, admin, env.topics if topics is None else topics)
    finally:
        consumer.close()


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout_s: float, what: str) -> None:
    """Poll ``check`` until it is true; fail after ``timeout_s`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.5)


def expected_records(*results: LoadgenResult) -> int:
    """Kafka records the workloads produce: one per row change, plus a tombstone per delete."""
    return sum(
        c.inserts + c.updates + 2 * c.deletes for result in results for c in result.tables.values()
    )
