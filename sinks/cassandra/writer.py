"""Idempotent writers of chat messages and telemetry readings into Cassandra.

Each insert is a prepared statement keyed by the event's own identity (room + TIMEUUID,
device + sensor + timestamp), so writing a batch again, after a redelivery or a crash,
rewrites the same rows: N distinct events always end as N rows. Rows are grouped by
partition into UNLOGGED batches of up to ``partition_batch_rows`` (one mutation per
partition on the server: the raw driver's best rate in ``bench/scaleout.py``, ~25x
one statement per row here), executed with bounded concurrency. A multi-partition batch
is never built (it only adds coordinator work). Any failed statement fails the whole
call with ``CassandraUnavailableError`` (transient): the caller retries the batch, which
is harmless because every statement is idempotent. ``CassandraTableSink`` puts one table
of the (blocking) writer behind the ``BatchSink`` contract (``sinks/contract.py``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal

from cassandra import DriverException, InvalidRequest
from cassandra.cluster import Cluster, NoHostAvailable, Session
from cassandra.concurrent import execute_concurrent
from cassandra.query import BatchStatement, BatchType, PreparedStatement

from config.errors import PermanentError, TransientError
from config.settings import CassandraSettings
from sinks.cassandra.schema import CHAT_TABLE, TELEMETRY_TABLE, checked_keyspace, ensure_schema
from sinks.cassandra.session import open_cluster
from sinks.contract import SinkLifecycle

log = logging.getLogger("bitvelocity.cassandra")


class CassandraUnavailableError(TransientError):
    """Cassandra did not take a write (down, restarting, timed out): retry the batch."""


class CassandraRowRejectedError(PermanentError):
    """Cassandra (or the driver's type check) refused a row: the record is dead-lettered."""


class CassandraWriterNotStartedError(PermanentError):
    """The writer was used before ``start()`` (a wiring bug)."""


def chat_row(record: dict[str, Any]) -> tuple[Any, ...]:
    """Bind values of one decoded ``ChatMessage`` for the chat insert."""
    message_time = record["messageTime"]
    return (
        record["roomId"],
        message_time if isinstance(message_time, uuid.UUID) else uuid.UUID(str(message_time)),
        record["userId"],
        record["messageText"],
        record["metadata"],
        record["createdBy"],
        record["traceId"],
    )


def telemetry_row(record: dict[str, Any]) -> tuple[Any, ...]:
    """Bind values of one decoded ``DeviceTelemetry`` for the telemetry insert."""
    return (
        record["deviceId"],
        record["sensorType"],
        record["timestamp"],
        record["sensorValue"],
        record["traceId"],
    )


#: Failures that retrying cannot fix: bad values for the column types, invalid requests.
_REJECTIONS = (TypeError, ValueError, InvalidRequest)


def bind_rows(
    convert: Callable[[dict[str, Any]], tuple[Any, ...]], records: Sequence[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """Bind values of each record; a record that does not fit the table is refused as a
    whole batch (``CassandraRowRejectedError``, permanent: the agent then finds it)."""
    try:
        return [convert(r) for r in records]
    except (KeyError, TypeError, ValueError) as exc:
        raise CassandraRowRejectedError(f"a record does not fit the table: {exc!r}") from exc


def partition_batches(
    statement: PreparedStatement, rows: Sequence[tuple[Any, ...]], key_columns: int, size: int
) -> list[BatchStatement]:
    """UNLOGGED batches of ``statement`` holding rows of one partition each (<= ``size``)."""
    batches = []
    for group in group_by_partition(rows, key_columns, size):
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for row in group:
            batch.add(statement, row)
        batches.append(batch)
    return batches


def group_by_partition(
    rows: Sequence[tuple[Any, ...]], key_columns: int, size: int
) -> list[list[tuple[Any, ...]]]:
    """Rows grouped by their first ``key_columns`` values, in groups of at most ``size``."""
    by_partition: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for row in rows:
        by_partition.setdefault(row[:key_columns], []).append(row)
    return [
        partition_rows[start : start + size]
        for partition_rows in by_partition.values()
        for start in range(0, len(partition_rows), size)
    ]


class CassandraWriter:
    """One session, both prepared inserts; blocking calls (run them in a thread)."""

    def __init__(self, settings: CassandraSettings, keyspace: str | None = None) -> None:
        self._settings = settings
        self.keyspace = checked_keyspace(keyspace or settings.keyspace)
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._chat: PreparedStatement | None = None
        self._telemetry: PreparedStatement | None = None

    def start(self) -> None:
        """Connect, create the schema when missing and prepare the inserts."""
        cluster = open_cluster(self._settings)
        try:
            session = cluster.connect()
            ensure_schema(session, self.keyspace)
            self._chat = session.prepare(
                # identifiers: a checked keyspace and code constants; values are bound
                f"INSERT INTO {self.keyspace}.{CHAT_TABLE} (room_id, message_time, user_id, "  # noqa: S608
                "message_text, metadata, created_by, trace_id) VALUES (?, ?, ?, ?, ?, ?, ?)"
            )
            self._telemetry = session.prepare(
                f"INSERT INTO {self.keyspace}.{TELEMETRY_TABLE} (device_id, sensor_type, "  # noqa: S608
                "timestamp, sensor_value, trace_id) VALUES (?, ?, ?, ?, ?)"
            )
            for statement in (self._chat, self._telemetry):
                statement.is_idempotent = True
        except (NoHostAvailable, DriverException, OSError) as exc:
            cluster.shutdown()
            raise CassandraUnavailableError(
                f"Cassandra at {self._settings.host}:{self._settings.port} is not reachable "
                f"({type(exc).__name__}: {exc}); is `bitvelocity stack up --with-scaleout` up?"
            ) from exc
        self._cluster, self._session = cluster, session

    def stop(self) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
        self._cluster = self._session = None

    @property
    def started(self) -> bool:
        return self._session is not None

    @property
    def session(self) -> Session:
        if self._session is None:
            raise CassandraWriterNotStartedError("CassandraWriter used before start()")
        return self._session

    def write_chat(self, records: Sequence[dict[str, Any]]) -> int:
        """Insert (or rewrite) one row per chat message; returns the rows written."""
        assert self._chat is not None
        return self._execute(self._chat, bind_rows(chat_row, records), CHAT_TABLE, key_columns=1)

    def write_telemetry(self, records: Sequence[dict[str, Any]]) -> int:
        """Insert (or rewrite) one row per reading; returns the rows written."""
        assert self._telemetry is not None
        rows = bind_rows(telemetry_row, records)
        return self._execute(self._telemetry, rows, TELEMETRY_TABLE, key_columns=2)

    def _execute(
        self,
        statement: PreparedStatement,
        rows: Sequence[tuple[Any, ...]],
        table: str,
        *,
        key_columns: int,
    ) -> int:
        if not rows:
            return 0
        batches = partition_batches(
            statement, rows, key_columns, self._settings.partition_batch_rows
        )
        try:
            results = execute_concurrent(
                self.session,
                [(batch, None) for batch in batches],
                concurrency=self._settings.concurrency,
                raise_on_first_error=False,
            )
        except (NoHostAvailable, DriverException, OSError) as exc:
            raise CassandraUnavailableError(
                f"writing {len(rows)} rows into {self.keyspace}.{table} failed: {exc}"
            ) from exc
        failures = [result for ok, result in results if not ok]
        rejected = [f for f in failures if isinstance(f, _REJECTIONS)]
        if rejected:
            raise CassandraRowRejectedError(
                f"{len(rejected)} of {len(rows)} rows refused by {self.keyspace}.{table} "
                f"(first: {type(rejected[0]).__name__}: {rejected[0]})"
            )
        if failures:
            raise CassandraUnavailableError(
                f"{len(failures)} of {len(rows)} writes into {self.keyspace}.{table} failed "
                f"(first: {type(failures[0]).__name__}: {failures[0]}); the batch is retried"
            )
        return len(rows)


class CassandraTableSink(SinkLifecycle):
    """``BatchSink`` of decoded chat messages or telemetry readings: ``write`` runs the
    blocking ``CassandraWriter`` call in a thread.

    Sinks over one writer share its session (one cluster connection for both tables): the
    first ``start`` connects it, the first ``stop`` closes it for all, so start and stop
    them together (``agents/scaleout_stores.py`` does)."""

    def __init__(self, writer: CassandraWriter, table: Literal["chat", "telemetry"]) -> None:
        self.writer = writer
        self.table = table
        self._write = writer.write_chat if table == "chat" else writer.write_telemetry

    async def start(self) -> None:
        if not self.writer.started:
            await asyncio.to_thread(self.writer.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self.writer.stop)

    async def write(self, batch: Sequence[dict[str, Any]]) -> int:
        """Insert (or rewrite) one row per record; returns the rows written."""
        return await asyncio.to_thread(self._write, batch)
