"""The Cassandra keyspace and tables of the scale-out stores (idempotent DDL).

``chat_messages``: one partition per room, newest message first (TIMEUUID clustering
``DESC``), so "last N messages of a room" is one partition slice. A storage-attached index
on ``user_id`` serves "messages of a user" without a second table.
``device_telemetry``: one partition per (device, sensor), newest reading first, so a
time-range query of one sensor is one partition slice. Primary keys are the events' own
identities: writing an event again overwrites the same row (idempotent).
"""

from __future__ import annotations

import re

from cassandra.cluster import Session

from config.errors import ConfigurationError

CHAT_TABLE = "chat_messages"
TELEMETRY_TABLE = "device_telemetry"
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def checked_keyspace(name: str) -> str:
    """``name`` if it is a plain CQL identifier (it is interpolated into DDL)."""
    if not _IDENTIFIER.match(name):
        raise ConfigurationError(
            f"Cassandra keyspace {name!r} is not a lower-case identifier (BV_CASSANDRA__KEYSPACE)"
        )
    return name


def schema_statements(keyspace: str) -> list[str]:
    ks = checked_keyspace(keyspace)
    return [
        f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}",
        f"""CREATE TABLE IF NOT EXISTS {ks}.{CHAT_TABLE} (
            room_id text,
            message_time timeuuid,
            user_id text,
            message_text text,
            metadata map<text, text>,
            created_by text,
            trace_id text,
            PRIMARY KEY ((room_id), message_time)
        ) WITH CLUSTERING ORDER BY (message_time DESC)""",
        f"CREATE INDEX IF NOT EXISTS {CHAT_TABLE}_user_id ON {ks}.{CHAT_TABLE} (user_id) "
        "USING 'sai'",
        f"""CREATE TABLE IF NOT EXISTS {ks}.{TELEMETRY_TABLE} (
            device_id text,
            sensor_type text,
            timestamp timestamp,
            sensor_value double,
            trace_id text,
            PRIMARY KEY ((device_id, sensor_type), timestamp)
        ) WITH CLUSTERING ORDER BY (timestamp DESC)""",
    ]


def ensure_schema(session: Session, keyspace: str) -> None:
    """Create the keyspace, tables and index when missing (waits for schema agreement)."""
    for statement in schema_statements(keyspace):
        session.execute(statement, timeout=60)


def drop_keyspace(session: Session, keyspace: str) -> None:
    session.execute(f"DROP KEYSPACE IF EXISTS {checked_keyspace(keyspace)}", timeout=60)
