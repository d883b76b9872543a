"""Every at-least-once writer is a ``BatchSink`` (built without connecting), and
``SinkLifecycle`` turns ``start``/``stop`` into ``async with``."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import pytest

from agents.scaleout_stores import ScaleoutStores
from config.settings import Settings
from serdes.avro import AvroCodec
from sinks.analytics_topics import AnalyticsPublisher
from sinks.cassandra.writer import CassandraTableSink, CassandraWriter
from sinks.contract import BatchSink, SinkLifecycle
from sinks.mongo.posts import PostsWriter
from sinks.postgres.analytics import GoldUpsertSink, write_hourly_revenue
from sinks.redis.feature_store import RedisFeatureStore
from tests.driver import CdcRecords


def no_connection() -> asyncpg.Connection:
    raise AssertionError("a conformance check never writes")


def conforming_sinks(settings: Settings) -> list[object]:
    writer = CassandraWriter(settings.cassandra)
    return [
        CassandraTableSink(writer, "chat"),
        CassandraTableSink(writer, "telemetry"),
        PostsWriter(settings.mongo),
        RedisFeatureStore(settings.redis, prefix="bv:test:"),
        AnalyticsPublisher(
            "localhost:1",
            CdcRecords().codec(),
            hourly_topic="h",
            hourly_schema_id=1,
            features_topic="f",
            features_schema_id=2,
            late_topic="l",
        ),
        GoldUpsertSink("gold.hourly_revenue", no_connection, write_hourly_revenue),
    ]


def test_every_at_least_once_writer_is_a_batch_sink() -> None:
    sinks = conforming_sinks(Settings())
    assert [type(s).__name__ for s in sinks if not isinstance(s, BatchSink)] == []


def test_the_scaleout_agents_write_through_batch_sinks() -> None:
    stores = ScaleoutStores(Settings())
    assert set(stores.sinks) == {"chat", "telemetry", "posts"}
    assert all(isinstance(sink, BatchSink) for sink in stores.sinks.values())


def test_a_class_without_write_is_not_a_batch_sink() -> None:
    assert not isinstance(SinkLifecycle(), BatchSink)
    assert not isinstance(AvroCodec, BatchSink)


class Recording(SinkLifecycle):
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def start(self) -> None:
        self.calls.append("start")

    async def stop(self) -> None:
        self.calls.append("stop")

    async def write(self, batch: Sequence[int]) -> int:
        self.calls.append(f"write {len(batch)}")
        return len(batch)


async def test_sink_lifecycle_starts_and_always_stops() -> None:
    sink = Recording()
    async with sink as entered:
        assert entered is sink
        assert await sink.write([1, 2]) == 2
    assert sink.calls == ["start", "write 2", "stop"]
    failing = Recording()
    with pytest.raises(RuntimeError):
        async with failing:
            raise RuntimeError("body failed (test)")
    assert failing.calls == ["start", "stop"]
    assert isinstance(sink, BatchSink)
