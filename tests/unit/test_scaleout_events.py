"""The seeded scale-out events and their store shapes (pure: no Kafka, no store)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.errors import ConfigurationError
from oltp.scaleout_events import (
    ScaleoutLoad,
    chat_events,
    latest_posts,
    post_events,
    telemetry_events,
    timeuuid,
)
from serdes.avro import read_body, write_body
from serdes.own_schemas import load
from sinks.cassandra.schema import checked_keyspace, schema_statements
from sinks.cassandra.writer import (
    CassandraRowRejectedError,
    bind_rows,
    chat_row,
    group_by_partition,
    telemetry_row,
)
from sinks.mongo.posts import (
    CONCURRENT_WRITERS,
    FERRETDB_CONNECTIONS,
    REPLACE_CHUNK,
    newer_than_held,
    newest_per_post,
    post_document,
    replace_chunks,
    replace_requests,
)

LOAD = ScaleoutLoad(seed=3, chat_messages=200, telemetry=300, posts=20, post_updates=60)


def test_same_seed_same_events_and_n_events_are_n_distinct_keys() -> None:
    assert chat_events(LOAD) == chat_events(LOAD)
    chat = chat_events(LOAD)
    assert len({(e["roomId"], e["messageTime"]) for e in chat}) == LOAD.chat_messages
    readings = telemetry_events(LOAD)
    keys = {(e["deviceId"], e["sensorType"], e["timestamp"]) for e in readings}
    assert len(keys) == LOAD.telemetry


def test_a_larger_load_of_the_same_seed_starts_with_the_smaller_one() -> None:
    bigger = ScaleoutLoad(seed=3, chat_messages=300, telemetry=400, posts=20, post_updates=90)
    assert chat_events(bigger)[:200] == chat_events(LOAD)
    assert telemetry_events(bigger)[:300] == telemetry_events(LOAD)
    assert post_events(bigger)[:80] == post_events(LOAD)


def test_post_versions_rise_by_one_per_update_and_latest_keeps_the_highest() -> None:
    events = post_events(LOAD)
    latest = latest_posts(events)
    assert len(latest) == LOAD.posts
    per_post: dict[str, list[int]] = {}
    for event in events:
        per_post.setdefault(event["postId"], []).append(event["version"])
    for post_id, versions in per_post.items():
        assert versions == list(range(1, len(versions) + 1))
        assert latest[post_id]["version"] == versions[-1]
    assert sum(len(v) for v in per_post.values()) == LOAD.posts + LOAD.post_updates


def test_runs_with_another_start_make_other_keys() -> None:
    later = ScaleoutLoad(
        seed=3, chat_messages=200, telemetry=300, posts=20, start=LOAD.start + timedelta(hours=1)
    )
    assert not {e["messageTime"] for e in chat_events(later)} & {
        e["messageTime"] for e in chat_events(LOAD)
    }
    assert not set(latest_posts(post_events(later))) & set(latest_posts(post_events(LOAD)))


_NAIVE_BOUNDS = {  # hypothesis takes naive bounds and attaches the timezone itself
    "min_value": datetime.fromisoformat("2000-01-01"),
    "max_value": datetime.fromisoformat("2100-01-01"),
}


@given(st.datetimes(**_NAIVE_BOUNDS, timezones=st.just(UTC)), st.integers(0, 9999))
def test_timeuuid_is_version_1_and_carries_its_time(at: datetime, sequence: int) -> None:
    value = timeuuid(at, sequence, 0x010203040506)
    assert value.version == 1
    ticks = int(at.timestamp() * 10_000_000) + 0x01B21DD213814000 + sequence
    assert value.time == ticks


@pytest.mark.parametrize(
    ("schema", "events"),
    [
        ("ChatMessage", chat_events(LOAD)[:5]),
        ("DeviceTelemetry", telemetry_events(LOAD)[:5]),
        ("SocialPost", post_events(LOAD)[:5]),
    ],
)
def test_events_round_trip_through_their_avro_schema(schema: str, events: list[dict]) -> None:  # type: ignore[type-arg]
    parsed = load(schema).parsed
    for event in events:
        decoded = read_body(write_body(parsed, event), parsed)
        if schema == "ChatMessage":
            assert decoded["messageTime"] == uuid.UUID(event["messageTime"])
            assert chat_row(decoded)[1] == uuid.UUID(event["messageTime"])
        else:
            assert decoded == event


def test_rows_bind_the_primary_key_first() -> None:
    chat = chat_events(LOAD)[0]
    assert chat_row(chat)[:2] == (chat["roomId"], uuid.UUID(chat["messageTime"]))
    reading = telemetry_events(LOAD)[0]
    assert telemetry_row(reading)[:3] == (
        reading["deviceId"],
        reading["sensorType"],
        reading["timestamp"],
    )


def test_a_record_missing_a_column_is_rejected_not_retried() -> None:
    with pytest.raises(CassandraRowRejectedError):
        bind_rows(telemetry_row, [{"deviceId": "d"}])


def test_post_document_is_keyed_by_post_id_and_keeps_the_version() -> None:
    event = post_events(LOAD)[0]
    document = post_document(event)
    assert document["_id"] == event["postId"]
    assert document["version"] == event["version"]
    assert set(document["content"]) == {"text", "media", "hashtags", "mentions"}
    assert set(document["engagement"]) == {"likes", "shares", "comments", "views"}


def test_a_batch_sends_only_the_newest_version_of_each_post() -> None:
    documents = [post_document(e) for e in post_events(LOAD)]
    newest = newest_per_post(list(reversed(documents)))
    assert len(newest) == LOAD.posts
    expected = {k: v["version"] for k, v in latest_posts(post_events(LOAD)).items()}
    assert {d["_id"]: d["version"] for d in newest} == expected
    request = replace_requests(newest[:1])[0]
    assert request._filter == {"_id": newest[0]["_id"]}
    assert not request._upsert


def test_only_missing_posts_are_inserted_and_only_older_held_ones_replaced() -> None:
    docs = [{"_id": "a", "version": 3}, {"_id": "b", "version": 3}, {"_id": "c", "version": 3}]
    missing, newer = newer_than_held(docs, {"a": 2, "b": 3})
    assert [d["_id"] for d in missing] == ["c"]
    assert [d["_id"] for d in newer] == ["a"]  # b holds the same version: not written
    assert newer_than_held(docs, {"a": 9, "b": 9, "c": 9}) == ([], [])


def test_cql_schema_is_the_seed_with_clustering_newest_first() -> None:
    statements = "\n".join(schema_statements("bv_test"))
    assert "PRIMARY KEY ((room_id), message_time)" in statements
    assert "PRIMARY KEY ((device_id, sensor_type), timestamp)" in statements
    assert statements.count("CLUSTERING ORDER BY") == 2
    assert "message_time timeuuid" in statements
    assert "metadata map<text, text>" in statements


@pytest.mark.parametrize("name", ["Bad", "1abc", "a-b", "a;DROP", ""])
def test_keyspace_names_are_checked_before_they_reach_ddl(name: str) -> None:
    with pytest.raises(ConfigurationError):
        checked_keyspace(name)


def test_cassandra_batches_hold_one_partition_each_and_at_most_the_size() -> None:
    rows = [telemetry_row(e) for e in telemetry_events(LOAD)]
    groups = group_by_partition(rows, 2, 7)
    assert sorted(r for g in groups for r in g) == sorted(rows)
    for group in groups:
        assert 1 <= len(group) <= 7
        assert len({row[:2] for row in group}) == 1


def test_replace_bulks_of_all_writers_fit_in_ferretdbs_connections_at_once() -> None:
    # Each statement of a running bulk holds a connection, and each bulk needs one more.
    assert CONCURRENT_WRITERS * (REPLACE_CHUNK + 1) <= FERRETDB_CONNECTIONS
    documents = [{"_id": i} for i in range(3 * REPLACE_CHUNK + 1)]
    chunks = replace_chunks(documents)
    assert max(len(c) for c in chunks) == REPLACE_CHUNK
    assert [d for c in chunks for d in c] == documents
