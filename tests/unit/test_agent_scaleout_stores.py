"""The scale-out store agents' logic through the test driver: ``chat-messages`` records in,
decoded (``decode_store_records``) and written (``StoreAgent.write_until_stored``) to a
stand-in store; the rows it received, retries and dead letters out."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from agents.scaleout_stores import StoreAgent, decode_store_records
from config.errors import PermanentError, TransientError
from config.settings import Settings, SinkSettings
from serdes.dead_letters import ERROR_CLASS, ORIGIN_OFFSET, header
from serdes.own_schemas import load
from sinks.cassandra.writer import chat_row
from tests.driver import CdcRecords, FakeClock, InputTopic, messages

T = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
TIMES = [uuid.UUID(f"{n:08x}-0000-11f0-8000-0000000000aa") for n in range(4)]


def chat(n: int, text: str) -> dict[str, Any]:
    return {
        "roomId": "room-1",
        "messageTime": str(TIMES[n]),
        "userId": f"user-{n}",
        "messageText": text,
        "metadata": {"client": "web"},
        "createdBy": f"user-{n}",
        "traceId": None,
    }


class FlakyStore:
    """Fails the first write (an outage), refuses any message whose text is ``REFUSED``."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.calls = 0

    async def write(self, records: list[dict[str, Any]]) -> int:
        self.calls += 1
        if self.calls == 1:
            raise TransientError("store down (test)")
        if any(r["messageText"] == "REFUSED" for r in records):
            raise PermanentError("message refused by the store (test)")
        rows = [chat_row(r) for r in records]
        self.rows.extend(rows)
        return len(rows)


async def test_chat_records_are_written_once_past_an_outage_and_bad_ones_dead_lettered() -> None:
    cdc = CdcRecords()
    codec = cdc.codec()
    schema_id = cdc.register(load("ChatMessage").text)
    topic = InputTopic("chat-messages", FakeClock(T))
    records = [
        topic.record(b"room-1", codec.encode(schema_id, chat(0, "hello"))),
        topic.record(b"room-1", b"\x00\x00\x00"),  # offset 1: truncated framing
        topic.record(b"room-1", codec.encode(schema_id, chat(1, "REFUSED"))),  # offset 2
        topic.record(b"room-1", codec.encode(schema_id, chat(2, "bye"))),
    ]
    settings = Settings(sink=SinkSettings(retry_initial_backoff_s=0.001, retry_max_backoff_s=0.001))
    store = FlakyStore()
    agent = StoreAgent(settings, "chat-messages", store.write, group_id="g", name="chat")

    decoded, letters = decode_store_records(messages(records), codec)
    assert [origin.offset for origin, _ in decoded] == [0, 2, 3]
    stored = await asyncio.wait_for(agent.write_until_stored(decoded, letters, asyncio.Event()), 5)

    assert stored
    assert store.rows == [
        ("room-1", TIMES[0], "user-0", "hello", {"client": "web"}, "user-0", None),
        ("room-1", TIMES[2], "user-2", "bye", {"client": "web"}, "user-2", None),
    ]
    assert (agent.stats.written, agent.stats.retries) == (2, 1)
    assert [header(letter.headers, ORIGIN_OFFSET) for letter in letters] == ["1", "2"]
    assert [header(letter.headers, ERROR_CLASS) for letter in letters][1] == "PermanentError"
    assert all(letter.topic == "chat-messages.dlq" for letter in letters)


async def test_a_write_stopped_during_an_outage_reports_nothing_stored() -> None:
    cdc = CdcRecords()
    codec = cdc.codec()
    schema_id = cdc.register(load("ChatMessage").text)
    topic = InputTopic("chat-messages", FakeClock(T))
    decoded, letters = decode_store_records(
        messages([topic.record(b"room-1", codec.encode(schema_id, chat(3, "hi")))]), codec
    )
    store = FlakyStore()
    stop = asyncio.Event()
    stop.set()
    agent = StoreAgent(Settings(), "chat-messages", store.write, group_id="g", name="chat")

    assert not await agent.write_until_stored(decoded, letters, stop)
    assert (store.rows, agent.stats.written, letters) == ([], 0, [])
