"""Chat and telemetry into the real Cassandra, posts into the real FerretDB: exactly the events.

The oracle is independent of the writers: the primary keys read back with a plain CQL
session and the documents with pymongo, compared with the events the seeded generator
made (``oltp.scaleout_events``), not with anything the agents counted.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from bench.pipeline_env import eventually
from bench.scaleout_env import ScaleoutEnv
from demo.scaleout import demo_load, run_scaleout_demo
from oltp.scaleout_events import ScaleoutLoad, chat_events, post_events
from oltp.scaleout_events import telemetry_events as make_telemetry
from oltp.scaleout_load import produce_scaleout
from sinks.cassandra.writer import CassandraWriter
from sinks.mongo.posts import PostsWriter, post_document
from tests.integration.scaleout_oracle import (
    chat_keys,
    consumed,
    env,
    expected_chat,
    expected_telemetry,
    expected_versions,
    post_versions,
    running_stores,
    scaleout_stores,
    stack_is_ready,
    stores_hold,
    telemetry_keys,
    true,
)
from tests.integration.throwaway import throwaway_database

__all__ = ["env", "scaleout_stores", "stack_is_ready"]  # fixtures

pytestmark = pytest.mark.timeout(600)

LOAD = ScaleoutLoad(seed=7, chat_messages=400, telemetry=600, posts=120, post_updates=240)


# -- tests -------------------------------------------------------------------------------------
async def test_n_events_become_exactly_n_rows_and_documents_also_after_redelivery(
    env: ScaleoutEnv,
) -> None:
    settings = env.settings
    produced = await asyncio.to_thread(produce_scaleout, settings, LOAD)
    total = produced.chat_messages + produced.telemetry + produced.post_versions
    async with running_stores(settings) as stores:
        await eventually(
            lambda: asyncio.to_thread(stores_hold, settings, LOAD),
            timeout_s=180,
            what="every event in its store",
        )
        await eventually(lambda: true(consumed(stores) == total), timeout_s=60, what="all consumed")
    assert len(chat_keys(settings)) == LOAD.chat_messages
    assert len(telemetry_keys(settings)) == LOAD.telemetry
    assert len(post_versions(settings)) == LOAD.posts

    # The same batches delivered again (a new consumer group reads from the start).
    async with running_stores(settings, group_prefix=f"{env.prefix}-again") as again:
        await eventually(
            lambda: true(consumed(again) == total), timeout_s=180, what="the redelivery"
        )
        assert sum(a.stats.written for a in again.agents.values()) > 0
    assert stores_hold(settings, LOAD)


async def test_stale_post_version_does_not_overwrite_a_newer_one(env: ScaleoutEnv) -> None:
    load = ScaleoutLoad(seed=11, posts=1, post_updates=2)
    v1, v2, v3 = (post_document(e) for e in post_events(load))
    writer = PostsWriter(env.settings.mongo)
    await writer.start()
    try:
        assert (await writer.upsert([v3])).applied == 1
        stale = await writer.upsert([v2])
        again = await writer.upsert([v1, v3])  # v3 again, redelivered with an older one
        stored = await writer.collection.find_one({"_id": v3["_id"]})
    finally:
        await writer.stop()
    assert (stale.applied, stale.stale) == (0, 1)
    assert (again.applied, again.stale) == (0, 1)  # only the newest of the batch counts
    assert stored is not None
    assert stored["version"] == 3
    assert stored["engagement"] == v3["engagement"]


async def test_older_post_version_arriving_later_on_the_topic_is_ignored(env: ScaleoutEnv) -> None:
    load = ScaleoutLoad(seed=3, posts=5, post_updates=10)
    versions = post_events(load)
    newest_first = sorted(versions, key=lambda e: -e["version"])
    writer = PostsWriter(env.settings.mongo)
    await writer.start()
    try:
        for event in newest_first:  # one by one: the reverse of the order they happened
            await writer.upsert([post_document(event)])
    finally:
        await writer.stop()
    assert post_versions(env.settings) == expected_versions(load)


async def test_several_writers_replacing_posts_at_once_do_not_wait_on_each_other(
    env: ScaleoutEnv,
) -> None:
    # FerretDB 1.24 holds a connection per statement of a running update command (100 per
    # database): writers replacing in bulks of 50 at once could wedge it until their socket
    # timeout (an interleaving, so several rounds).
    writers_count, per_writer, rounds = 4, 50, 3
    load = ScaleoutLoad(seed=13, posts=writers_count * per_writer)
    first = [post_document(e) for e in post_events(load)]
    mongo = env.settings.mongo.model_copy(update={"timeout_s": 5.0})
    writers = [PostsWriter(mongo) for _ in range(writers_count)]
    for writer in writers:
        await writer.start()
    try:
        await writers[0].upsert(first)
        for version in range(2, 2 + rounds):
            newer = [{**d, "version": version} for d in first]
            parts = [newer[i * per_writer : (i + 1) * per_writer] for i in range(writers_count)]
            outcomes = await asyncio.wait_for(
                asyncio.gather(*(w.upsert(p) for w, p in zip(writers, parts, strict=True))),
                timeout=300,
            )
            assert [o.applied for o in outcomes] == [per_writer] * writers_count
    finally:
        for writer in writers:
            await writer.stop()
    assert set(post_versions(env.settings).values()) == {1 + rounds}


def test_writing_the_same_cassandra_batch_twice_keeps_one_row_per_event(env: ScaleoutEnv) -> None:
    load = ScaleoutLoad(seed=5, chat_messages=50, telemetry=80)
    writer = CassandraWriter(env.settings.cassandra)
    writer.start()
    try:
        for _ in range(2):
            assert writer.write_chat(chat_events(load)) == 50
            assert writer.write_telemetry(make_telemetry(load)) == 80
    finally:
        writer.stop()
    assert chat_keys(env.settings) == expected_chat(load)
    assert telemetry_keys(env.settings) == expected_telemetry(load)


def test_chat_rows_read_newest_first_within_a_room(env: ScaleoutEnv) -> None:
    load = ScaleoutLoad(seed=9, chat_messages=40, rooms=1)
    writer = CassandraWriter(env.settings.cassandra)
    writer.start()
    try:
        writer.write_chat(chat_events(load))
        rows = list(
            writer.session.execute(
                f"SELECT message_time FROM {writer.keyspace}.chat_messages "
                "WHERE room_id = 'room-0' LIMIT 5"
            )
        )
    finally:
        writer.stop()
    newest = max((uuid.UUID(e["messageTime"]) for e in chat_events(load)), key=lambda u: u.time)
    times = [r.message_time.time for r in rows]
    assert len(rows) == 5
    assert times == sorted(times, reverse=True)
    assert rows[0].message_time == newest


async def test_posts_indexes_exist_and_starting_again_keeps_them(env: ScaleoutEnv) -> None:
    for _ in range(2):  # a restarted worker creates them again: must be a no-op
        writer = PostsWriter(env.settings.mongo)
        await writer.start()
        try:
            names = {index["name"] async for index in writer.collection.list_indexes()}
        finally:
            await writer.stop()
        assert {"author_recent", "hashtag_recent", "mentions", "recent"} <= names


def test_demo_section_finds_every_event_of_its_run_in_its_store_and_in_bronze(
    env: ScaleoutEnv,
) -> None:
    load = demo_load(seed=5, chat=200, telemetry=300, posts=40)
    with throwaway_database(env.settings, "bv_sodemo", oltp=False) as database:
        postgres = env.settings.postgres.model_copy(update={"database": database})
        settings = env.settings.model_copy(update={"postgres": postgres})
        summary = run_scaleout_demo(settings, load, lambda _line: None, timeout_s=240)
    assert summary.ok
    assert (summary.chat_found, summary.telemetry_found, summary.posts_found) == (200, 300, 40)
    assert summary.post_versions == 120
    # A fresh environment: the stores and bronze hold exactly this run's events.
    assert (summary.chat_total, summary.telemetry_total, summary.posts_total) == (200, 300, 40)
    assert summary.bronze == {
        "chat_messages": (200, 200),
        "device_telemetry": (300, 300),
        "social_posts": (120, 120),
    }
