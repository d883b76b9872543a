"""Rows and documents per scale-out store: chat and telemetry in Cassandra, posts in MongoDB.

Read with fresh, independent clients (a plain CQL session and pymongo), not the writers,
so the demo and ``bitvelocity scaleout counts`` report what the stores really hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import pymongo

from config.settings import Settings
from sinks.cassandra.schema import CHAT_TABLE, TELEMETRY_TABLE, checked_keyspace
from sinks.cassandra.session import cql_session
from sinks.mongo.posts import POSTS


@dataclass(frozen=True, slots=True)
class StoreCounts:
    chat_messages: int
    telemetry: int
    posts: int


def cassandra_count(settings: Settings, table: str) -> int:
    keyspace = checked_keyspace(settings.cassandra.keyspace)
    with cql_session(settings.cassandra, keyspace=None) as session:
        exists = session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s "
            "AND table_name = %s",
            (keyspace, table),
        ).one()
        if exists is None:
            return 0
        query = f"SELECT COUNT(*) FROM {keyspace}.{table}"  # noqa: S608 - checked identifiers
        row = session.execute(query, timeout=120).one()
    return int(row[0])


def posts_count(settings: Settings) -> int:
    m = settings.mongo
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        m.uri(), serverSelectionTimeoutMS=int(m.timeout_s * 1000)
    )
    try:
        return int(client[m.database][POSTS].count_documents({}))
    finally:
        client.close()


def store_counts(settings: Settings) -> StoreCounts:
    return StoreCounts(
        chat_messages=cassandra_count(settings, CHAT_TABLE),
        telemetry=cassandra_count(settings, TELEMETRY_TABLE),
        posts=posts_count(settings),
    )
