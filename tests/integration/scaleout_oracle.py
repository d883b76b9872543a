"""The oracle of the scale-out store tests, independent of the writers.

Primary keys read back with a plain CQL session and documents with pymongo, compared with
the events the seeded generator made (``oltp.scaleout_events``), never with anything the
agents counted. Also the fixtures: stores up once per session, an isolated environment.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pymongo
import pytest
from cassandra import InvalidRequest, OperationTimedOut
from cassandra.cluster import NoHostAvailable

from agents.scaleout_stores import ScaleoutStores
from bench.scaleout_env import ScaleoutEnv, scaleout_environment, scaleout_stores_up
from config.settings import Settings
from oltp.scaleout_events import ScaleoutLoad, chat_events, latest_posts, post_events
from oltp.scaleout_events import telemetry_events as make_telemetry
from sinks.cassandra.session import cql_session
from sinks.mongo.posts import POSTS
from stack.manager import Stack

#: What these tests use of the default stack (they never touch PostgreSQL or Redis).
NEEDED = ("kafka", "registry")


@pytest.fixture(scope="session", autouse=True)
def stack_is_ready(settings: Settings) -> None:
    """Overrides the suite-wide check with the services these tests use (fail, not skip)."""
    rows = Stack(settings).status(NEEDED)
    missing = [f"{row.name} ({row.state})" for row in rows if not row.ready]
    if missing:
        pytest.fail(
            f"the local stack is not ready: {', '.join(missing)}; run `bitvelocity stack up`",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def scaleout_stores(settings: Settings) -> Iterator[Stack]:
    with scaleout_stores_up(settings) as stack:
        yield stack


@pytest.fixture
def env(settings: Settings, scaleout_stores: Stack) -> Iterator[ScaleoutEnv]:
    with scaleout_environment(settings, batch_max_records=200) as env:
        yield env


# -- the oracle ------------------------------------------------------------------------------
def _select(settings: Settings, columns: str, table: str) -> list[Any]:
    """All rows of ``table``; none while the agents have not created the keyspace yet or
    Cassandra is still coming back from a restart (a poll then simply tries again)."""
    ks = settings.cassandra.keyspace
    try:
        with cql_session(settings.cassandra, keyspace=None) as session:
            return list(session.execute(f"SELECT {columns} FROM {ks}.{table}", timeout=60))
    except InvalidRequest:  # keyspace or table does not exist (yet)
        return []
    except (NoHostAvailable, OperationTimedOut):
        return []


def chat_keys(settings: Settings) -> set[tuple[str, str]]:
    rows = _select(settings, "room_id, message_time", "chat_messages")
    return {(r.room_id, str(r.message_time)) for r in rows}


def telemetry_keys(settings: Settings) -> set[tuple[str, str, datetime]]:
    rows = _select(settings, "device_id, sensor_type, timestamp", "device_telemetry")
    return {(r.device_id, r.sensor_type, r.timestamp.replace(tzinfo=UTC)) for r in rows}


def post_versions(settings: Settings) -> dict[str, int]:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        settings.mongo.uri(), serverSelectionTimeoutMS=5000
    )
    try:
        docs = client[settings.mongo.database][POSTS].find({}, {"version": 1})
        return {str(d["_id"]): int(d["version"]) for d in docs}
    finally:
        client.close()


def expected_chat(load: ScaleoutLoad) -> set[tuple[str, str]]:
    return {(e["roomId"], e["messageTime"]) for e in chat_events(load)}


def expected_telemetry(load: ScaleoutLoad) -> set[tuple[str, str, datetime]]:
    return {(e["deviceId"], e["sensorType"], e["timestamp"]) for e in make_telemetry(load)}


def expected_versions(load: ScaleoutLoad) -> dict[str, int]:
    return {k: v["version"] for k, v in latest_posts(post_events(load)).items()}


def stores_hold(settings: Settings, load: ScaleoutLoad) -> bool:
    return (
        chat_keys(settings) == expected_chat(load)
        and telemetry_keys(settings) == expected_telemetry(load)
        and post_versions(settings) == expected_versions(load)
    )


@contextlib.asynccontextmanager
async def running_stores(
    settings: Settings, *, group_prefix: str | None = None
) -> AsyncIterator[ScaleoutStores]:
    stores = ScaleoutStores(settings, group_prefix=group_prefix)
    stop = asyncio.Event()
    task = asyncio.create_task(stores.run(stop))
    try:
        yield stores
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)


def consumed(stores: ScaleoutStores) -> int:
    return sum(agent.stats.consumed for agent in stores.agents.values())


async def true(value: bool) -> bool:
    """``value`` as an awaitable check for ``eventually``."""
    return value
