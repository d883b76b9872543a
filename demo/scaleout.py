"""The scale-out part of ``bitvelocity demo --with-scaleout``: events in, checked per store.

This run's events get event times starting now, so their keys are new whatever ran before.
The store agents run in-process until their consumer groups have committed the topics' end
offsets; then every event of this run is looked up by primary key in Cassandra and every
post's version in MongoDB. The medallion sink runs beside them on the same topics (its own
group, the one of ``bitvelocity worker --with-scaleout``) until its stored offsets reach the
ends too; this run's bronze rows are those at or past the offsets the topics ended at before
the run. The demo is ok when all of them are there (counts per store are shown next to the
stores' totals, which include earlier runs).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import pymongo
from cassandra.concurrent import execute_concurrent_with_args
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from admin.capture import partition_high_watermarks
from agents.medallion import MedallionSink
from agents.scaleout_stores import ScaleoutStores
from config.settings import Settings
from demo.pipeline import stored_offsets
from oltp.scaleout_events import ScaleoutLoad, latest_posts
from oltp.scaleout_load import ensure_topics, produce_scaleout, scaleout_events
from serdes.plain_events import scaleout_event_specs
from sinks.cassandra.schema import CHAT_TABLE, TELEMETRY_TABLE
from sinks.cassandra.session import cql_session
from sinks.mongo.posts import POSTS
from sinks.postgres.connection import connect
from sinks.postgres.quality.gate import RulesQualityGate
from sinks.scaleout_counts import store_counts

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ScaleoutSummary:
    """Per store: this run's events, how many of them were found, the store's total."""

    chat_produced: int
    chat_found: int
    chat_total: int
    telemetry_produced: int
    telemetry_found: int
    telemetry_total: int
    posts_produced: int
    posts_found: int
    posts_total: int
    post_versions: int
    seconds: float
    #: Bronze table -> (this run's rows, the table's total), PostgreSQL warehouse.
    bronze: dict[str, tuple[int, int]]

    @property
    def bronze_expected(self) -> dict[str, int]:
        """One bronze row per record produced: every message, reading and post version."""
        return {
            "chat_messages": self.chat_produced,
            "device_telemetry": self.telemetry_produced,
            "social_posts": self.post_versions,
        }

    @property
    def ok(self) -> bool:
        return (
            self.chat_found == self.chat_produced
            and self.telemetry_found == self.telemetry_produced
            and self.posts_found == self.posts_produced
            and {t: rows for t, (rows, _total) in self.bronze.items()} == self.bronze_expected
        )

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def demo_load(seed: int, chat: int, telemetry: int, posts: int) -> ScaleoutLoad:
    now = datetime.now(UTC).replace(microsecond=0)
    return ScaleoutLoad(
        seed=seed,
        chat_messages=chat,
        telemetry=telemetry,
        posts=posts,
        post_updates=posts * 2,
        start=now,
    )


def run_scaleout_demo(
    settings: Settings, load: ScaleoutLoad, progress: Progress, timeout_s: float = 180.0
) -> ScaleoutSummary:
    progress(
        f"producing {load.chat_messages} chat messages, {load.telemetry} readings and "
        f"{load.posts} posts ({load.post_updates} updates)"
    )
    ensure_topics(settings)
    before = _ends(settings)
    produce_scaleout(settings, load)
    progress("running the scale-out store agents and the bronze sink until every event is stored")
    started = time.monotonic()
    asyncio.run(_stores_until_caught_up(settings, timeout_s))
    seconds = time.monotonic() - started
    bronze = asyncio.run(_bronze_rows(settings, before))
    events = scaleout_events(load)
    chat_found, telemetry_found = _found_in_cassandra(
        settings, events["ChatMessage"], events["DeviceTelemetry"]
    )
    posts = latest_posts(events["SocialPost"])
    totals = store_counts(settings)
    return ScaleoutSummary(
        chat_produced=len(events["ChatMessage"]),
        chat_found=chat_found,
        chat_total=totals.chat_messages,
        telemetry_produced=len(events["DeviceTelemetry"]),
        telemetry_found=telemetry_found,
        telemetry_total=totals.telemetry,
        posts_produced=len(posts),
        posts_found=_posts_at_version(settings, posts),
        posts_total=totals.posts,
        post_versions=len(events["SocialPost"]),
        seconds=seconds,
        bronze=bronze,
    )


async def _stores_until_caught_up(settings: Settings, timeout_s: float) -> None:
    stores = ScaleoutStores(settings)
    bronze = MedallionSink(
        settings,
        RulesQualityGate(settings),
        worker_id="demo-scaleout",
        topics=list(scaleout_event_specs(settings.topics)),
    )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(stores.run(stop)), asyncio.create_task(bronze.run(stop))]
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not any(t.done() for t in tasks):
            lag = await asyncio.to_thread(_group_lag, settings, stores)
            if lag == 0 and await _bronze_caught_up(settings, bronze.group_id):
                return
            await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)


def _ends(settings: Settings) -> dict[tuple[str, int], int]:
    """End offset of every partition of the three topics."""
    bootstrap = settings.kafka.bootstrap_servers
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bv-demo-watermarks"})
    try:
        return partition_high_watermarks(
            consumer,
            AdminClient({"bootstrap.servers": bootstrap}),
            list(scaleout_event_specs(settings.topics)),
        )
    finally:
        consumer.close()


async def _bronze_caught_up(settings: Settings, group: str) -> bool:
    ends = await asyncio.to_thread(_ends, settings)
    stored = await stored_offsets(settings, group)
    return all(stored.get(key, 0) >= end for key, end in ends.items() if end)


async def _bronze_rows(
    settings: Settings, before: dict[tuple[str, int], int]
) -> dict[str, tuple[int, int]]:
    """Bronze table -> (rows at or past ``before``'s offsets: this run's, all rows)."""
    connection = await connect(settings.postgres)
    try:
        counts = {}
        for topic, spec in scaleout_event_specs(settings.topics).items():
            # Table names come from the specs (code constants), values travel as parameters.
            rows = await connection.fetch(
                f"SELECT source_partition, source_offset FROM bronze.{spec.table} "  # noqa: S608
                "WHERE source_topic = $1",
                topic,
            )
            ours = sum(1 for r in rows if r[1] >= before.get((topic, r[0]), 0))
            counts[spec.table] = (ours, len(rows))
        return counts
    finally:
        await connection.close()


def _group_lag(settings: Settings, stores: ScaleoutStores) -> int:
    """Records on the topics not yet committed by the agents' groups."""
    lag = 0
    for agent in stores.agents.values():
        consumer = Consumer(
            {"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": agent.group_id}
        )
        try:
            metadata = consumer.list_topics(agent.topic, timeout=10).topics[agent.topic]
            partitions = [TopicPartition(agent.topic, p) for p in metadata.partitions]
            committed = consumer.committed(partitions, timeout=10)
            for tp in committed:
                _low, high = consumer.get_watermark_offsets(tp, timeout=10)
                lag += high - max(tp.offset, 0)
        finally:
            consumer.close()
    return lag


def _found_in_cassandra(
    settings: Settings, chat: list[dict[str, Any]], telemetry: list[dict[str, Any]]
) -> tuple[int, int]:
    ks = settings.cassandra.keyspace
    with cql_session(settings.cassandra, keyspace=ks) as session:
        by_chat = session.prepare(
            f"SELECT room_id FROM {CHAT_TABLE} WHERE room_id = ? AND message_time = ?"  # noqa: S608
        )
        by_reading = session.prepare(
            f"SELECT device_id FROM {TELEMETRY_TABLE} "  # noqa: S608 - code constants
            "WHERE device_id = ? AND sensor_type = ? AND timestamp = ?"
        )
        chat_keys = [(e["roomId"], uuid.UUID(e["messageTime"])) for e in chat]
        reading_keys = [(e["deviceId"], e["sensorType"], e["timestamp"]) for e in telemetry]
        found = []
        for statement, keys in ((by_chat, chat_keys), (by_reading, reading_keys)):
            results = execute_concurrent_with_args(session, statement, keys, concurrency=64)
            found.append(sum(1 for ok, rows in results if ok and rows.one() is not None))
    return found[0], found[1]


def _posts_at_version(settings: Settings, posts: dict[str, dict[str, Any]]) -> int:
    m = settings.mongo
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        m.uri(), serverSelectionTimeoutMS=int(m.timeout_s * 1000)
    )
    try:
        stored = client[m.database][POSTS].find({"_id": {"$in": list(posts)}}, {"version": 1})
        return sum(1 for d in stored if d["version"] == posts[d["_id"]]["version"])
    finally:
        client.close()
