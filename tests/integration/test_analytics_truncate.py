"""A TRUNCATE of the orders reaches the analytics (issue 26, docs/decisions/0021): after a
load, ``TRUNCATE public.orders CASCADE`` while the analytics are still reading that load,
and a second load, gold, Redis and the output topics equal the SQL oracle over the source
as it is now (the truncated orders contribute nothing); a restart from the changelog
alone rebuilds the same state, and a replay of the CDC topics the same gold.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from agents.analytics import AnalyticsRunner
from agents.analytics_state import state_store
from config.settings import Settings
from oltp.loadgen import LoadgenConfig, run_loadgen
from serdes.avro import AvroCodec
from serdes.registry import RegistryClient
from sinks.postgres.connection import connect
from tests.integration.analytics_env import (
    analytics_environment,
    gold_differences,
    gold_rows,
    quiescent,
    redis_differences,
)
from tests.integration.sink_env import SinkEnv, eventually, high_watermarks

pytestmark = pytest.mark.usefixtures("no_leftovers")


@pytest.fixture(scope="module")
def env(settings: Settings) -> Iterator[SinkEnv]:
    with analytics_environment(settings) as pipeline:
        yield pipeline


def with_state_dir(env: SinkEnv, folder: Path) -> Settings:
    features = env.settings.features.model_copy(update={"state_dir": folder})
    return env.settings.model_copy(update={"features": features})


def newest_on_topic(env: SinkEnv, topic: str) -> dict[str, dict[str, Any]]:
    """The highest-version record per key of an output topic, decoded with the registry."""
    settings = env.settings
    registry = RegistryClient(settings.registry)
    codec = AvroCodec(registry)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": "bv-truncate-oracle",
            "enable.auto.commit": False,
        }
    )
    newest: dict[str, dict[str, Any]] = {}
    try:
        marks = {k: v for k, v in high_watermarks(env, [topic]).items() if v}
        consumer.assign([TopicPartition(t, p, 0) for t, p in marks])
        left = dict(marks)
        while any(offset > 0 for offset in left.values()):
            for message in consumer.consume(num_messages=5000, timeout=5):
                if message.error() is not None:
                    continue
                left[(topic, message.partition() or 0)] -= 1
                _, record = codec.decode(message.value() or b"")
                key = (message.key() or b"").decode()
                field = "version" if "version" in record else "featureVersion"
                if key not in newest or record[field] >= newest[key][field]:
                    newest[key] = record
    finally:
        consumer.close()
        registry.close()
    return newest


async def topic_differences(env: SinkEnv) -> list[str]:
    """How the newest record per key of both output topics differs from gold."""
    settings = env.settings
    connection = await connect(settings.postgres)
    try:
        hourly = await connection.fetch("SELECT * FROM gold.hourly_revenue")
        features = await connection.fetch("SELECT * FROM gold.customer_features")
    finally:
        await connection.close()
    topics = settings.topics
    on_hourly = await asyncio.to_thread(newest_on_topic, env, topics.hourly_revenue)
    on_features = await asyncio.to_thread(newest_on_topic, env, topics.customer_features)
    gold_hourly = {
        f"{r['window_start'].isoformat()}|{r['currency']}": (r["revenue"], r["order_count"])
        for r in hourly
    }
    topic_hourly = {k: (v["revenue"], v["orderCount"]) for k, v in on_hourly.items()}
    gold_features = {
        str(r["customer_id"]): (r["lifetime_order_count"], r["lifetime_value"]) for r in features
    }
    topic_features = {
        k: (v["lifetimeOrderCount"], v["lifetimeValue"]) for k, v in on_features.items()
    }
    return [
        f"{name} {key}: topic {topic.get(key)} != gold {gold.get(key)}"
        for name, topic, gold in (
            ("window", topic_hourly, gold_hourly),
            ("customer", topic_features, gold_features),
        )
        for key in sorted(topic.keys() | gold.keys())
        if topic.get(key) != gold.get(key)
    ]


def assert_same_gold(
    now: tuple[list[tuple], list[tuple]], before: tuple[list[tuple], list[tuple]]
) -> None:
    """Every row of both gold tables unchanged, versions included (named when not)."""
    for rows, earlier in zip(now, before, strict=True):
        changed = sorted(set(rows) ^ set(earlier))
        assert changed == [], "\n".join(map(str, changed[:20]))


async def run_until_quiescent(runner: AnalyticsRunner, env: SinkEnv, as_of: datetime) -> None:
    task = asyncio.create_task(runner.run(asyncio.Event()))
    try:
        await quiescent(runner, env, timeout_s=120)
        await runner.flush_now(as_of)
    finally:
        task.cancel()  # killed, no clean stop: what was flushed is what survives
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _stored_state(settings: Settings, group: str) -> dict[str, dict[Any, Any]]:
    """Every entry of the analytics state the group's store restores, table by table."""
    store = state_store(settings, group)
    await asyncio.to_thread(store.open)
    try:
        return {name: dict(t.items()) for name, t in store.tables.items()}
    finally:
        await asyncio.to_thread(store.close)


async def test_truncated_orders_leave_gold_redis_and_topics_and_a_restart_agrees(
    env: SinkEnv, tmp_path: Path
) -> None:
    settings = with_state_dir(env, tmp_path)
    group = f"bv-analytics-{secrets.token_hex(3)}"
    frozen: list[datetime] = []
    runner = AnalyticsRunner(
        settings,
        group_id=group,
        store=state_store(settings, group),
        clock=lambda: frozen[0] if frozen else datetime.now(UTC),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    connection = await connect(settings.postgres)
    try:
        load = LoadgenConfig(seed=261, customers=30, transactions=1500, days_back=20)
        await run_loadgen(settings, load)
        truncated = await connection.fetchval("SELECT count(*) FROM public.orders")
        await connection.execute("TRUNCATE public.orders CASCADE")  # the analytics still read
        await run_loadgen(settings, LoadgenConfig(seed=262, transactions=600, days_back=20))
        after = await connection.fetchval("SELECT count(*) FROM public.orders")
        loaded_at = datetime.now(UTC)
        await quiescent(runner, env, timeout_s=180)

        async def past_the_load() -> bool:  # a heartbeat (every 10 s) moved every partition
            assert runner.core is not None
            watermark = runner.core.watermarks.current()
            return watermark is not None and watermark >= loaded_at

        # Else a later run, its watermark moved on by heartbeats, closes windows this one
        # left open: gold would differ by finality, not by the truncate.
        await eventually(past_the_load, timeout_s=60, what="the watermark past the load")
        as_of = datetime.now(UTC)
        frozen.append(as_of)
        await runner.flush_now(as_of)
        retracted = await connection.fetchval(
            "SELECT count(*) FROM gold.hourly_revenue WHERE order_count = 0"
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)
        await connection.close()
    assert truncated > 100
    assert after > 0
    assert retracted > 0  # windows of truncated orders only: every order withdrawn
    problems = await gold_differences(settings, as_of, min_windows=20, settled=False)
    assert problems == [], "\n".join(problems)  # I4 over the source after the truncate
    assert await redis_differences(settings) == []  # I5
    assert await topic_differences(env) == []
    first_gold = await gold_rows(settings)
    first_state = await _stored_state(settings, group)  # from its local folder
    assert first_state["truncations"].keys() == {"orders", "order_items"}

    # Its local folder lost: the changelog alone gives back the same state, entry for entry.
    shutil.rmtree(tmp_path / group)
    restored_state = await _stored_state(settings, group)
    differing = [
        (name, key)
        for name, table in first_state.items()
        for key in table.keys() | restored_state[name].keys()
        if table.get(key) != restored_state[name].get(key)
    ]
    assert differing == []
    # A worker on it goes on with the same gold.
    restored = AnalyticsRunner(
        settings, group_id=group, store=state_store(settings, group), clock=lambda: as_of
    )
    await run_until_quiescent(restored, env, as_of)
    assert_same_gold(await gold_rows(settings), first_gold)

    # No state at all: a replay of the CDC topics (another interleaving) gives the same gold.
    replayed = AnalyticsRunner(
        settings, group_id=f"bv-analytics-{secrets.token_hex(3)}", clock=lambda: as_of
    )
    await run_until_quiescent(replayed, env, as_of)
    assert_same_gold(await gold_rows(settings), first_gold)
    assert await redis_differences(settings) == []
