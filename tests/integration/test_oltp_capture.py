"""Every OLTP change reaches its topic once, under the root table name, in commit order per key."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Message
from confluent_kafka.admin import AdminClient

from admin.capture import read_topics
from config.settings import Settings
from oltp.loadgen import LoadgenConfig, LoadgenResult, run_loadgen
from oltp.schema import CAPTURED_TABLES
from serdes.avro import AvroCodec
from serdes.registry import RegistryClient
from tests.integration.oltp_database import CapturedDatabase, captured_oltp_database

#: Everything the module creates is removed again, also when a test fails.
pytestmark = pytest.mark.usefixtures("no_leftovers")

WORKLOAD = LoadgenConfig(seed=7, customers=20, products=15, categories=5, transactions=250)


@dataclass(frozen=True)
class Event:
    topic: str
    partition: int
    offset: int
    key: tuple[tuple[str, Any], ...]
    op: str | None  # None for a tombstone
    after: dict[str, Any] | None


@dataclass(frozen=True)
class Capture:
    db: CapturedDatabase
    result: LoadgenResult
    events: list[Event]
    topics: set[str]


def expected_messages(result: LoadgenResult) -> int:
    # Each delete is followed by a tombstone.
    return sum(c.inserts + c.updates + 2 * c.deletes for c in result.tables.values())


def decode(codec: AvroCodec, message: Message) -> Event:
    key = codec.decode(message.key())[1] if message.key() else {}
    value = message.value()
    envelope = codec.decode(value)[1] if value is not None else None
    return Event(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=tuple(sorted(key.items())),
        op=envelope["op"] if envelope else None,
        after=envelope.get("after") if envelope else None,
    )


@pytest.fixture(scope="module")
def capture(settings: Settings) -> Iterator[Capture]:
    with captured_oltp_database(settings) as db:
        result = asyncio.run(run_loadgen(settings, WORKLOAD, database=db.database))
        topics = {db.topic(table) for table in CAPTURED_TABLES}
        want = expected_messages(result)
        messages = read_topics(
            settings.kafka.bootstrap_servers,
            sorted(topics),
            done=lambda read: len(read) >= want,
            timeout_s=180,
        )
        with RegistryClient(settings.registry) as registry:
            codec = AvroCodec(registry)
            events = [decode(codec, m) for m in messages]
        admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
        ours = {
            t for t in admin.list_topics(timeout=5).topics if t.startswith(db.spec.topic_prefix)
        }
        yield Capture(db, result, events, ours)


def test_workload_touched_every_table_with_every_kind_of_change(capture: Capture) -> None:
    tables = capture.result.tables
    assert set(tables) == set(CAPTURED_TABLES)
    assert tables["orders"].inserts > 0
    assert tables["orders"].updates > 0
    assert tables["orders"].deletes > 0
    assert tables["products"].updates > 0


def test_changes_arrive_under_root_table_names_not_partitions(capture: Capture) -> None:
    data_topics = {t for t in capture.topics if ".public." in t}
    assert data_topics == {capture.db.topic(table) for table in CAPTURED_TABLES}
    assert not any("orders_p" in t or "orders_default" in t for t in capture.topics)


def test_every_row_change_is_captured_exactly_once_per_table(capture: Capture) -> None:
    seen: dict[str, Counter[str | None]] = defaultdict(Counter)
    for event in capture.events:
        seen[event.topic.rsplit(".", 1)[-1]][event.op] += 1
    for table, changes in capture.result.tables.items():
        assert seen[table]["c"] == changes.inserts, table
        assert seen[table]["u"] == changes.updates, table
        assert seen[table]["d"] == changes.deletes, table
        assert seen[table][None] == changes.deletes, f"{table}: one tombstone per delete"
        assert seen[table]["r"] == 0, table  # the database was empty when capture began


def test_each_delete_is_followed_by_its_tombstone(capture: Capture) -> None:
    by_position = {(e.topic, e.partition, e.offset): e for e in capture.events}
    deletes = [e for e in capture.events if e.op == "d"]
    assert deletes
    for delete in deletes:
        following = by_position[(delete.topic, delete.partition, delete.offset + 1)]
        assert following.op is None
        assert following.key == delete.key


def test_versions_of_each_order_arrive_in_commit_order_on_one_partition(capture: Capture) -> None:
    history: dict[tuple[tuple[str, Any], ...], list[Event]] = defaultdict(list)
    for event in capture.events:
        if event.topic == capture.db.topic("orders"):
            history[event.key].append(event)
    assert history
    for key, events in history.items():
        assert len({e.partition for e in events}) == 1, key
        events.sort(key=lambda e: e.offset)
        versions = [e.after["version"] for e in events if e.after is not None]
        assert versions == list(range(1, len(versions) + 1)), (key, versions)
