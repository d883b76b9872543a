"""An isolated scale-out bronze pipeline, and the oracle its tests judge by.

The environment: a throw-away warehouse database (migrated, 0007 included), the three
event topics, a CDC prefix and a consumer group, all named after one run id and removed
afterwards. It needs Kafka, the registry and PostgreSQL only (not Cassandra or FerretDB).

The oracle is independent of the sink: Kafka read back with confluent-kafka, every value
decoded with plain fastavro from the ``.avsc`` files, compared with the bronze rows read
with plain SQL and with the events the seeded generator made.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import fastavro

from admin.capture import delete_topics_with_prefix, read_topics
from agents.medallion import MedallionSink
from bench.pipeline_env import (
    SinkEnv,
    delete_consumer_groups,
    delete_subjects,
    eventually,
    high_watermarks,
)
from config.settings import Settings
from oltp.scaleout_events import ScaleoutLoad
from oltp.scaleout_load import scaleout_events
from serdes.own_schemas import load as load_schema
from sinks.postgres.connection import connect
from sinks.postgres.quality.gate import RulesQualityGate
from tests.integration.sink_env import stored_offsets
from tests.integration.throwaway import throwaway_database

#: Bronze table -> the Avro schema its topic carries (what the generator names its events).
TABLES = {
    "chat_messages": "ChatMessage",
    "device_telemetry": "DeviceTelemetry",
    "social_posts": "SocialPost",
}
RecordKey = tuple[str, int, int]


def event_topics(env: SinkEnv) -> dict[str, str]:
    """Bronze table -> its topic in this environment."""
    t = env.settings.topics
    return {
        "chat_messages": t.chat_messages,
        "device_telemetry": t.device_telemetry,
        "social_posts": t.social_posts,
    }


@contextlib.contextmanager
def scaleout_bronze_environment(
    base: Settings, *, batch_max_records: int = 200
) -> Iterator[SinkEnv]:
    """Unique topics, group and warehouse database for one test; all removed afterwards."""
    run_id = secrets.token_hex(3)
    prefix = f"bvsob{run_id}"
    settings = base.model_copy(
        update={
            "topics": base.topics.model_copy(
                update={
                    "cdc_prefix": prefix,
                    "chat_messages": f"{prefix}.chat-messages",
                    "device_telemetry": f"{prefix}.device-telemetry",
                    "social_posts": f"{prefix}.social-posts",
                }
            ),
            "kafka": base.kafka.model_copy(update={"consumer_group": f"bv-sob-{run_id}"}),
            "sink": base.sink.model_copy(
                update={
                    "batch_max_records": batch_max_records,
                    "retry_max_backoff_s": 2.0,
                    "scaleout_bronze": True,
                }
            ),
        }
    )
    with throwaway_database(settings, "bv_sob", oltp=False) as database:
        postgres = settings.postgres.model_copy(update={"database": database})
        env = SinkEnv(settings.model_copy(update={"postgres": postgres}), run_id)
        try:
            yield env
        finally:
            # Clean-up is best effort (as in ``bench.scaleout_env``): a broker slow to delete
            # under load must not turn a passed test into an error; names are unique anyway.
            bootstrap = settings.kafka.bootstrap_servers
            with contextlib.suppress(Exception):
                delete_topics_with_prefix(bootstrap, prefix)  # the event topics and their DLQs
            with contextlib.suppress(Exception):
                delete_subjects(settings, event_topics(env).values())
            with contextlib.suppress(Exception):
                delete_consumer_groups(bootstrap, [env.group])


def worker_env(env: SinkEnv) -> dict[str, str]:
    """Environment of a ``bitvelocity worker --with-scaleout`` process on this environment."""
    t = env.settings.topics
    return {
        **env.worker_env(),
        "BV_TOPICS__CHAT_MESSAGES": t.chat_messages,
        "BV_TOPICS__DEVICE_TELEMETRY": t.device_telemetry,
        "BV_TOPICS__SOCIAL_POSTS": t.social_posts,
        "BV_SINK__RETRY_MAX_BACKOFF_S": str(env.settings.sink.retry_max_backoff_s),
    }


@contextlib.asynccontextmanager
async def running_bronze_sink(env: SinkEnv, worker_id: str = "w1") -> AsyncIterator[MedallionSink]:
    """The medallion sink on the event topics, in this process, until the block ends."""
    sink = MedallionSink(
        env.settings,
        RulesQualityGate(env.settings),
        worker_id=worker_id,
        topics=list(event_topics(env).values()),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    try:
        yield sink
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)


async def wait_until_stored(env: SinkEnv, expect: int, timeout_s: float = 180) -> None:
    """Until the topics hold ``expect`` records and the stored offsets reached their ends."""
    topics = list(event_topics(env).values())

    async def caught_up() -> bool:
        marks = await asyncio.to_thread(high_watermarks, env, topics)
        if sum(marks.values()) < expect:
            return False
        stored = await stored_offsets(env)
        return all(stored.get(key, 0) >= end for key, end in marks.items() if end)

    await eventually(caught_up, timeout_s=timeout_s, what=f"{expect} records stored in bronze")


# -- the oracle ------------------------------------------------------------------------------
def kafka_values(env: SinkEnv) -> dict[RecordKey, bytes | None]:
    """Every record on the event topics: (topic, partition, offset) -> value bytes."""
    topics = list(event_topics(env).values())
    total = sum(high_watermarks(env, topics).values())
    messages = read_topics(
        env.settings.kafka.bootstrap_servers,
        topics,
        done=lambda read: len(read) >= total,
        timeout_s=60,
    )
    return {(m.topic() or "", m.partition() or 0, m.offset() or 0): m.value() for m in messages}


def decode_plainly(value: bytes, schema_name: str) -> Any:
    """Confluent framing (magic 0, 4-byte id) + the ``.avsc`` file, with fastavro alone."""
    assert value[:1] == b"\x00", "not Confluent-framed"
    schema = fastavro.parse_schema(json.loads(load_schema(schema_name).text))
    return fastavro.schemaless_reader(io.BytesIO(value[5:]), schema, None)


def as_json(event: dict[str, Any]) -> Any:
    """An event as JSON holds it (timestamps ISO 8601, UUIDs as text), via the stdlib."""
    return json.loads(json.dumps(event, default=_json_value))


def _json_value(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def expected_events(*loads: ScaleoutLoad) -> dict[str, Counter[str]]:
    """Bronze table -> the generator's events as canonical JSON (a multiset)."""
    expected: dict[str, Counter[str]] = {table: Counter() for table in TABLES}
    for load in loads:
        events = scaleout_events(load)
        for table, schema in TABLES.items():
            expected[table].update(_canonical(as_json(e)) for e in events[schema])
    return expected


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


async def bronze_rows(env: SinkEnv) -> dict[str, list[tuple[RecordKey, Any]]]:
    """Bronze table -> its rows as ((topic, partition, offset), payload), with plain SQL."""
    connection = await connect(env.settings.postgres)
    try:
        rows = {}
        for table in TABLES:
            found = await connection.fetch(
                "SELECT source_topic, source_partition, source_offset, raw_payload::text "
                f"FROM bronze.{table}"
            )
            rows[table] = [((r[0], r[1], r[2]), json.loads(r[3])) for r in found]
        return rows
    finally:
        await connection.close()


async def assert_bronze_exactly_once(
    env: SinkEnv, expected: dict[str, Counter[str]], poison: set[RecordKey] = frozenset()
) -> dict[str, int]:
    """I1/I2/I6 for the event topics; returns bronze rows per table for the report.

    Every record on Kafka except ``poison`` has exactly one bronze row in its topic's table,
    whose payload is that record's bytes decoded by fastavro alone; the payloads are the
    generator's events; offsets and the batch accounting moved with the rows.
    """
    values = kafka_values(env)
    rows = await bronze_rows(env)
    topics = event_topics(env)
    for table, table_rows in rows.items():
        keys = [key for key, _ in table_rows]
        assert len(keys) == len(set(keys)), f"bronze.{table}: a record landed twice"
        on_topic = {k for k in values if k[0] == topics[table]}
        assert set(keys) == on_topic - poison, f"bronze.{table}: rows != records on Kafka"
        for key, payload in table_rows:
            raw = values[key]
            assert raw is not None
            assert payload == as_json(decode_plainly(raw, TABLES[table])), key
        payloads = Counter(_canonical(p) for _, p in table_rows)
        assert payloads == expected[table], f"bronze.{table}: payloads != generated events"
    marks = high_watermarks(env, list(topics.values()))
    stored = await stored_offsets(env)
    assert {k: v for k, v in stored.items() if marks.get(k, 0)} == {
        k: v for k, v in marks.items() if v
    }
    connection = await connect(env.settings.postgres)
    try:
        totals = await connection.fetchrow(
            "SELECT coalesce(sum(consumed), 0), coalesce(sum(bronze_rows), 0), "
            "coalesce(sum(dead_letters), 0) FROM ops.sink_batches WHERE group_id = $1",
            env.group,
        )
    finally:
        await connection.close()
    bronze_total = sum(len(r) for r in rows.values())
    assert tuple(totals) == (len(values), bronze_total, len(poison))
    return {table: len(r) for table, r in rows.items()}
