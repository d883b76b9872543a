"""Replay plans: where a dead letter goes back to, and each origin record replayed once."""

from __future__ import annotations

import pytest

from admin.dead_letters import one_per_origin, replay_plan
from config.errors import BitVelocityError
from serdes.dead_letters import (
    ORIGIN_OFFSET,
    ORIGIN_PARTITION,
    ORIGIN_TOPIC,
    REPLAY_OF,
    RecordOrigin,
)


def letter(dlq_offset: int, origin_offset: int, origin_topic: str = "chat") -> RecordOrigin:
    headers = (
        (ORIGIN_TOPIC, origin_topic.encode()),
        (ORIGIN_PARTITION, b"1"),
        (ORIGIN_OFFSET, str(origin_offset).encode()),
        ("bv.error.class", b"DecodeError"),
        ("traceparent", b"00-abc-def-01"),
    )
    return RecordOrigin(f"{origin_topic}.dlq", 0, dlq_offset, b"k", b"\x00bad", headers)


def test_plan_targets_the_origin_topic_keeps_user_headers_and_marks_the_replay() -> None:
    plan = replay_plan(letter(7, 42))
    assert plan.target_topic == "chat"
    assert dict(plan.headers) == {"traceparent": b"00-abc-def-01", REPLAY_OF: b"chat.dlq:0:7"}


def test_a_record_without_origin_is_not_replayable() -> None:
    with pytest.raises(BitVelocityError, match="not replayable"):
        replay_plan(RecordOrigin("x.dlq", 0, 1, None, b"", ()))


def test_two_dead_letters_of_one_origin_record_replay_it_once() -> None:
    # The store agents and the bronze sink both dead-letter chat:1:42; chat:1:43 is another.
    plans = [replay_plan(letter(o, origin)) for o, origin in ((0, 42), (1, 42), (2, 43))]
    kept, repeats = one_per_origin(plans)
    assert repeats == 1
    assert [p.dlq.offset for p in kept] == [0, 2]


def test_same_offset_in_another_topic_is_another_record() -> None:
    plans = [replay_plan(letter(0, 42, "chat")), replay_plan(letter(1, 42, "posts"))]
    assert one_per_origin(plans) == (plans, 0)
