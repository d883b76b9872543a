"""Scale-out events -> bronze rows: decoded by topic, planned bronze-only, bad ones dead-lettered.

Expected values come from the seeded generator (``oltp.scaleout_events``) and by hand, not
from the code under test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from agents.medallion import medallion_topics, sink_topics
from config.errors import PermanentError
from config.settings import Settings, SinkSettings, TopicSettings
from oltp.scaleout_events import ScaleoutLoad, chat_events, post_events, telemetry_events, timeuuid
from serdes.avro import AvroCodec
from serdes.dead_letters import ERROR_CLASS, ORIGIN_OFFSET, RecordOrigin, dead_letter, header
from serdes.framing import frame
from serdes.own_schemas import load
from serdes.plain_events import (
    CHAT_MESSAGES,
    DEVICE_TELEMETRY,
    SOCIAL_POSTS,
    EventShapeError,
    PlainEventDecoder,
    scaleout_event_specs,
    timeuuid_time,
)
from serdes.registry import RegistryClient
from sinks.postgres.batch import BRONZE_COLUMNS, ConsumedRecord, event_id, plan_batch
from streams.worker import with_scaleout_bronze
from tests.unit.fake_registry import StaticRegistry

START = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
IDS = {1: "ChatMessage", 2: "DeviceTelemetry", 3: "SocialPost"}
#: Id 4: a plain string; id 5: a record named like ChatMessage whose messageTime is no UUID.
ODD = {
    4: '"string"',
    5: {
        "type": "record",
        "name": "ChatMessage",
        "namespace": "com.bitvelocity.social",
        "fields": [{"name": "messageTime", "type": "string"}],
    },
}
CODEC = AvroCodec(
    cast(
        RegistryClient,
        StaticRegistry({**{i: load(name).text for i, name in IDS.items()}, **ODD}),
    )
)


def framed(schema_id: int, record: dict[str, Any]) -> bytes:
    return CODEC.encode(schema_id, record)


def consumed(topic: str, offset: int, value: bytes, decoder: PlainEventDecoder) -> ConsumedRecord:
    origin = RecordOrigin(topic, 1, offset, b"k", value)
    try:
        decoded: Any = decoder.decode(origin.key, origin.value, origin.headers)
    except EventShapeError as exc:  # what decode_with_retry does with a PermanentError
        decoded = dead_letter(origin, exc)
    return ConsumedRecord(topic, 1, offset, decoded, None, origin)


def row_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(BRONZE_COLUMNS, row, strict=True))


def as_json(event: dict[str, Any]) -> Any:
    """The event as JSON would hold it, converted independently of the sink (stdlib json)."""
    return json.loads(json.dumps(event, default=lambda v: v.isoformat()))


def test_timeuuid_time_is_the_time_the_uuid_was_made_for() -> None:
    assert timeuuid_time(timeuuid(START, 0, 0x1234)) == START
    assert timeuuid_time(timeuuid(START, 10, 0x1234)) == START + timedelta(microseconds=1)


def test_each_topic_lands_in_its_table_with_its_event_time_and_operation() -> None:
    load_ = ScaleoutLoad(seed=3, chat_messages=3, telemetry=3, posts=2, post_updates=2, start=START)
    cases = [
        (CHAT_MESSAGES, 1, chat_events(load_)),
        (DEVICE_TELEMETRY, 2, telemetry_events(load_)),
        (SOCIAL_POSTS, 3, post_events(load_)),
    ]
    for spec, schema_id, events in cases:
        decoder = PlainEventDecoder(CODEC, spec)
        records = [
            consumed("t", 10 + i, framed(schema_id, e), decoder) for i, e in enumerate(events)
        ]
        plan = plan_batch(records, "unused for events")
        assert list(plan.bronze) == [spec.table]
        assert plan.silver == {}
        assert (plan.consumed, plan.bronze_rows, plan.dead_letters) == (
            len(events),
            len(events),
            [],
        )
        for i, (row, event) in enumerate(zip(plan.bronze[spec.table], events, strict=True)):
            got = row_dict(row)
            assert got["event_id"] == event_id("t", 1, 10 + i)
            assert (got["source_topic"], got["source_partition"], got["source_offset"]) == (
                "t",
                1,
                10 + i,
            )
            assert got["table_name"] == spec.table
            assert got["source_system"] == spec.record_name
            assert (got["source_lsn"], got["source_tx_id"]) == (None, None)
            assert got["trace_id"] == event["traceId"]
            assert json.loads(got["raw_payload"]) == as_json(event)
            assert got["ingestion_date"] == got["event_timestamp"].date()
    chat_row = row_dict(plan_of(CHAT_MESSAGES, 1, cases[0][2][:1])[0])
    assert chat_row["event_timestamp"] == START  # message 0: exactly ``start``
    assert chat_row["operation_type"] == "INSERT"
    posts = plan_of(SOCIAL_POSTS, 3, cases[2][2])
    assert [row_dict(r)["operation_type"] for r in posts] == [
        "INSERT",
        "INSERT",
        "UPDATE",
        "UPDATE",
    ]
    assert [row_dict(r)["event_timestamp"] for r in posts] == [e["updatedAt"] for e in cases[2][2]]
    readings = plan_of(DEVICE_TELEMETRY, 2, cases[1][2])
    assert [row_dict(r)["event_timestamp"] for r in readings] == [
        e["timestamp"] for e in cases[1][2]
    ]


def plan_of(spec: Any, schema_id: int, events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    decoder = PlainEventDecoder(CODEC, spec)
    records = [consumed("t", i, framed(schema_id, e), decoder) for i, e in enumerate(events)]
    return plan_batch(records, "x").bronze[spec.table]


def test_a_record_of_another_type_on_an_event_topic_is_a_dead_letter() -> None:
    load_ = ScaleoutLoad(seed=1, chat_messages=1, telemetry=1, start=START)
    decoder = PlainEventDecoder(CODEC, CHAT_MESSAGES)
    good = consumed("chat", 0, framed(1, chat_events(load_)[0]), decoder)
    wrong = consumed("chat", 1, framed(2, telemetry_events(load_)[0]), decoder)
    plan = plan_batch([good, wrong], "x")
    assert plan.bronze_rows == 1
    [letter] = plan.dead_letters
    assert header(letter.headers, ERROR_CLASS) == "EventShapeError"
    assert header(letter.headers, ORIGIN_OFFSET) == "1"


def test_a_nul_character_in_an_event_dead_letters_only_that_event() -> None:
    events = chat_events(ScaleoutLoad(seed=2, chat_messages=3, start=START))
    events[1] = {**events[1], "metadata": {"client": "we\x00b"}}
    decoder = PlainEventDecoder(CODEC, CHAT_MESSAGES)
    plan = plan_batch([consumed("c", i, framed(1, e), decoder) for i, e in enumerate(events)], "x")
    assert [row_dict(r)["source_offset"] for r in plan.bronze["chat_messages"]] == [0, 2]
    [letter] = plan.dead_letters
    assert header(letter.headers, ERROR_CLASS) == "UnstorableValueError"
    assert letter.value == framed(1, events[1])  # byte for byte


def test_undecodable_bytes_raise_a_permanent_error() -> None:
    decoder = PlainEventDecoder(CODEC, DEVICE_TELEMETRY)
    with pytest.raises(PermanentError):
        decoder.decode(None, frame(2, b"\xff\xff"), None)


def test_specs_follow_the_configured_topic_names() -> None:
    topics = TopicSettings(chat_messages="a", device_telemetry="b", social_posts="c")
    assert scaleout_event_specs(topics) == {
        "a": CHAT_MESSAGES,
        "b": DEVICE_TELEMETRY,
        "c": SOCIAL_POSTS,
    }


def test_the_worker_reads_the_event_topics_only_with_scaleout_bronze() -> None:
    settings = Settings().model_copy(update={"sink": SinkSettings()})  # the defaults
    events = {"chat-messages", "device-telemetry", "social-posts"}
    assert not events & set(sink_topics(settings))
    assert set(medallion_topics(settings)) < set(sink_topics(with_scaleout_bronze(settings)))
    assert events == set(sink_topics(with_scaleout_bronze(settings))) - set(
        medallion_topics(settings)
    )


@pytest.mark.parametrize(
    ("schema_id", "record"), [(4, "hello"), (5, {"messageTime": "not a uuid"})]
)
def test_a_record_of_an_unexpected_shape_is_a_dead_letter_not_a_crash(
    schema_id: int, record: Any
) -> None:
    decoder = PlainEventDecoder(CODEC, CHAT_MESSAGES)
    with pytest.raises(EventShapeError):
        decoder.decode(None, CODEC.encode(schema_id, record), None)
