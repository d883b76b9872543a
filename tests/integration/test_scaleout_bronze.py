"""Scale-out events land in bronze exactly once, and poison goes to the DLQ (decision 0015).

Against the real Kafka, registry and PostgreSQL; judged by the oracle in
``scaleout_bronze_env`` (Kafka read back, values decoded by fastavro alone, the seeded
generator's events), never by what the sink counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from confluent_kafka import KafkaError, Message, Producer

from admin.capture import read_topics
from bench.pipeline_env import SinkEnv
from config.settings import Settings
from oltp.scaleout_events import ScaleoutLoad, telemetry_events
from oltp.scaleout_load import produce_scaleout
from serdes.avro import AvroCodec
from serdes.dead_letters import (
    ERROR_CLASS,
    ERROR_MESSAGE,
    ORIGIN_OFFSET,
    ORIGIN_PARTITION,
    ORIGIN_TOPIC,
    header,
)
from serdes.own_schemas import load as load_schema
from serdes.registry import RegistryClient
from tests.integration.scaleout_bronze_env import (
    assert_bronze_exactly_once,
    expected_events,
    running_bronze_sink,
    scaleout_bronze_environment,
    wait_until_stored,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def env(settings: Settings) -> Iterator[SinkEnv]:
    with scaleout_bronze_environment(settings) as env:
        yield env


def total(load: ScaleoutLoad) -> int:
    return load.chat_messages + load.telemetry + load.posts + load.post_updates


async def test_n_scaleout_events_become_exactly_n_bronze_rows_holding_the_event(
    env: SinkEnv,
) -> None:
    # Event times in January: the rows go to the tables' default partitions.
    load = ScaleoutLoad(seed=17, chat_messages=300, telemetry=500, posts=60, post_updates=120)
    await asyncio.to_thread(produce_scaleout, env.settings, load)
    async with running_bronze_sink(env) as sink:
        await wait_until_stored(env, total(load))
    counts = await assert_bronze_exactly_once(env, expected_events(load))
    assert counts == {"chat_messages": 300, "device_telemetry": 500, "social_posts": 180}
    assert sink.stats.consumed == total(load)
    assert sink.stats.dead_letters == 0


def produce_poison(env: SinkEnv) -> list[tuple[int, int]]:
    """Two undecodable records on the chat topic: not Avro at all, and another event type.
    Returns their (partition, offset)."""
    settings = env.settings
    topic = settings.topics.chat_messages
    with RegistryClient(settings.registry) as registry:
        telemetry_id = registry.register(
            f"{settings.topics.device_telemetry}-value",
            load_schema("DeviceTelemetry").text,
            settings.registry.compatibility,
        )
        reading = telemetry_events(ScaleoutLoad(seed=1, telemetry=1))[0]
        wrong_type = AvroCodec(registry).encode(telemetry_id, reading)
    placed: list[tuple[int, int]] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        assert error is None, error
        placed.append((message.partition() or 0, message.offset() or 0))

    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for value in (b"definitely not avro", wrong_type):
        producer.produce(topic, key=b"room-1", value=value, on_delivery=delivered)
    assert producer.flush(30) == 0
    return placed


async def test_poison_records_go_to_the_dlq_with_headers_and_the_events_after_them_land(
    env: SinkEnv,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)  # today: the tables' daily partitions
    before = ScaleoutLoad(
        seed=21, chat_messages=120, telemetry=150, posts=20, post_updates=20, start=now
    )
    after = ScaleoutLoad(
        seed=22, chat_messages=80, telemetry=50, posts=10, post_updates=10, start=now
    )
    await asyncio.to_thread(produce_scaleout, env.settings, before)
    poison = await asyncio.to_thread(produce_poison, env)
    await asyncio.to_thread(produce_scaleout, env.settings, after)
    async with running_bronze_sink(env):
        await wait_until_stored(env, total(before) + 2 + total(after))
    topic = env.settings.topics.chat_messages
    keys = {(topic, p, o) for p, o in poison}
    await assert_bronze_exactly_once(env, expected_events(before, after), poison=keys)

    dlq = env.settings.topics.dlq_topic(topic)
    letters = await asyncio.to_thread(
        read_topics,
        env.settings.kafka.bootstrap_servers,
        [dlq],
        done=lambda read: len(read) >= 2,
        timeout_s=60,
    )
    assert len(letters) == 2
    by_offset = {int(header(m.headers(), ORIGIN_OFFSET) or -1): m for m in letters}
    assert {(p, o) for p, o in poison} == {
        (int(header(m.headers(), ORIGIN_PARTITION) or -1), o) for o, m in by_offset.items()
    }
    garbage, wrong = (by_offset[o] for _p, o in sorted(poison, key=lambda x: x[1]))
    for letter in (garbage, wrong):
        assert header(letter.headers(), ORIGIN_TOPIC) == topic
        assert header(letter.headers(), ERROR_MESSAGE)
    assert garbage.value() == b"definitely not avro"  # byte for byte
    assert header(wrong.headers(), ERROR_CLASS) == "EventShapeError"
    assert header(garbage.headers(), ERROR_CLASS) != "EventShapeError"
