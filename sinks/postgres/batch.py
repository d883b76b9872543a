"""Plan one partition's batch: bronze rows, folded silver changes, dead letters, filtered.

Pure: no database, no clock. The plan keeps the accounting of invariant I6 by
construction: every consumed record is exactly one of bronze row, dead letter or filtered
(a tombstone, a logical message, a table we do not sink). A change PostgreSQL cannot
store (a NUL character in a string: text and jsonb refuse it) becomes a dead letter, so
one hostile record can never fail, and so stall, its whole batch. Silver changes are folded per
key in offset order, so a batch writes each key once with its newest state; TOAST
"unchanged" columns take the value of an earlier change of the same key in the batch,
and otherwise stay marked so the upsert keeps the stored value. Plain events (the
scale-out topics, ``serdes.plain_events``) become bronze rows only: they have no silver state.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import orjson

from config.errors import PermanentError
from records.change_events import ChangeEvent, Decoded, Operation, Tombstone
from serdes.dead_letters import DeadLetter, RecordOrigin, dead_letter
from serdes.logical_types import UNCHANGED, Unchanged
from serdes.plain_events import PlainEvent
from sinks.postgres.tables import TABLES, TableSpec

#: Namespace of bronze event ids: uuid5(topic/partition/offset), the same on every replay.
EVENT_ID_NAMESPACE = uuid.UUID("6f1d8a52-3b1e-4c55-9a8e-2f0c7d6b9e41")
_OPERATION_TYPES = {
    Operation.CREATE: "INSERT",
    Operation.UPDATE: "UPDATE",
    Operation.DELETE: "DELETE",
    Operation.READ: "READ",
    Operation.TRUNCATE: "TRUNCATE",
}
BRONZE_COLUMNS = (
    "event_id",
    "event_timestamp",
    "source_system",
    "operation_type",
    "table_name",
    "raw_payload",
    "source_topic",
    "source_partition",
    "source_offset",
    "source_lsn",
    "source_tx_id",
    "trace_id",
    "ingestion_date",
)


@dataclass(frozen=True, slots=True)
class ConsumedRecord:
    """One Kafka record as consumed, with what decoding made of it."""

    topic: str
    partition: int
    offset: int
    decoded: Decoded | PlainEvent | DeadLetter
    trace_id: str | None = None
    #: The bytes as consumed, for a dead letter decided after decoding (see ``plan_batch``).
    origin: RecordOrigin | None = None


class UnstorableValueError(PermanentError):
    """A decoded change holds a value PostgreSQL cannot store (a NUL character)."""


@dataclass(slots=True)
class SilverChange:
    """The newest state of one key in this batch."""

    row: dict[str, Any]
    unchanged: set[str]
    hard_deleted: bool
    lsn: int
    partition: int
    offset: int
    tx_id: int | None
    committed_at: datetime
    bronze_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class TruncateMark:
    """A TRUNCATE of a captured table: every silver row older than ``lsn`` is deleted."""

    table: str
    lsn: int
    partition: int
    offset: int
    tx_id: int | None
    committed_at: datetime
    bronze_id: uuid.UUID


@dataclass
class PlannedBatch:
    """Everything one transaction writes for one partition."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    bronze: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    silver: dict[str, dict[tuple[Any, ...], SilverChange]] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: Truncates, in offset order; applied after the batch's silver upserts (see the writer).
    truncates: list[TruncateMark] = field(default_factory=list)
    filtered: int = 0
    consumed: int = 0

    @property
    def bronze_rows(self) -> int:
        return sum(len(rows) for rows in self.bronze.values())

    @property
    def silver_rows(self) -> int:
        return sum(len(changes) for changes in self.silver.values())


_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes
#: RFC 4122 name-based SHA-1 UUID bits: version 5 in bits 76-79, variant 10 in bits 62-63.
_VERSION_5_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_VERSION_5_SET = (5 << 76) | (0x8000 << 48)


def event_id(topic: str, partition: int, offset: int) -> uuid.UUID:
    """The bronze id of a record: deterministic, so a replay produces the same id.

    Equal to ``uuid.uuid5(EVENT_ID_NAMESPACE, "<topic>/<partition>/<offset>")``, built
    with one ``UUID(int=...)`` instead of ``uuid5``'s bytes round trip: 1.8 against 3.0 us,
    and it runs for every record (``tests/unit/test_bronze_event_id.py``)."""
    name = f"{topic}/{partition}/{offset}".encode()
    digest = hashlib.sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest()
    return uuid.UUID(int=(int.from_bytes(digest[:16]) & _VERSION_5_CLEAR) | _VERSION_5_SET)


def plan_batch(
    records: Sequence[ConsumedRecord],
    source_system: str,
    *,
    bronze_only: bool = False,
    tables: Mapping[str, TableSpec] = TABLES,
) -> PlannedBatch:
    """The batch plan of ``records`` (one partition, in offset order).

    ``bronze_only``: skip the silver fold (the Delta Lake sink writes bronze alone).
    ``tables``: the specs to fold by (a worker's, grown by schema evolutions).
    """
    if not records:
        raise ValueError("an empty batch has nothing to plan")
    first = records[0]
    plan = PlannedBatch(
        first.topic, first.partition, first.offset, records[-1].offset, consumed=len(records)
    )
    for record in records:
        decoded = record.decoded
        if isinstance(decoded, DeadLetter):
            plan.dead_letters.append(decoded)
            continue
        if isinstance(decoded, PlainEvent):  # an event topic: bronze only, no silver state
            event_row = _event_bronze_row(record, decoded)
            if _JSON_NUL in event_row[_RAW_PAYLOAD] and _nested_nul(decoded.record):
                plan.dead_letters.append(
                    _unstorable(record, f"bronze.{decoded.table} event", decoded.schema_id)
                )
            else:
                plan.bronze.setdefault(decoded.table, []).append(event_row)
            continue
        if isinstance(decoded, Tombstone) or decoded.op is Operation.MESSAGE:
            plan.filtered += 1
            continue
        spec = tables.get(decoded.table)
        if spec is None:
            plan.filtered += 1
            continue
        bronze_id = event_id(record.topic, record.partition, record.offset)
        bronze_row = _bronze_row(record, decoded, bronze_id, source_system)
        if _JSON_NUL in bronze_row[_RAW_PAYLOAD] and _holds_nul(decoded):
            what = f"{decoded.schema}.{decoded.table} change"
            plan.dead_letters.append(_unstorable(record, what, decoded.schema_id))
            continue
        plan.bronze.setdefault(spec.name, []).append(bronze_row)
        if bronze_only:
            continue
        if decoded.op is Operation.TRUNCATE:
            plan.truncates.append(_truncate_mark(spec, record, decoded, bronze_id))
        else:
            _fold_silver(plan.silver.setdefault(spec.name, {}), spec, record, decoded, bronze_id)
    return plan


def _truncate_mark(
    spec: TableSpec, record: ConsumedRecord, event: ChangeEvent, bronze_id: uuid.UUID
) -> TruncateMark:
    return TruncateMark(
        spec.name,
        event.position.lsn or 0,
        record.partition,
        record.offset,
        event.position.tx_id,
        event.committed_at,
        bronze_id,
    )


def _bronze_row(
    record: ConsumedRecord, event: ChangeEvent, bronze_id: uuid.UUID, source_system: str
) -> tuple[Any, ...]:
    payload = {
        "op": event.op.value,
        "key": event.key,
        "before": event.before,
        "after": event.after,
        "source": {
            "schema": event.schema,
            "table": event.table,
            "lsn": event.position.lsn,
            "txId": event.position.tx_id,
            "snapshot": event.position.snapshot,
            "committed_at": event.committed_at,
        },
    }
    committed = event.committed_at
    return (
        bronze_id,
        committed,
        source_system,
        _OPERATION_TYPES[event.op],
        event.table,
        orjson.dumps(payload, default=_json_default).decode(),
        record.topic,
        record.partition,
        record.offset,
        event.position.lsn,
        event.position.tx_id,
        record.trace_id,
        committed.astimezone(UTC).date(),
    )


def _event_bronze_row(record: ConsumedRecord, event: PlainEvent) -> tuple[Any, ...]:
    """A plain event's bronze row: the event itself is the payload; no LSN, no transaction."""
    return (
        event_id(record.topic, record.partition, record.offset),
        event.event_time,
        event.source_system,
        event.operation,
        event.table,
        orjson.dumps(event.record, default=_json_default).decode(),
        record.topic,
        record.partition,
        record.offset,
        None,
        None,
        record.trace_id or event.trace_id,
        event.event_time.astimezone(UTC).date(),
    )


#: How a NUL character looks in the raw payload JSON (a cheap test before the exact one).
_JSON_NUL = "\\u0000"
_RAW_PAYLOAD = BRONZE_COLUMNS.index("raw_payload")


def _holds_nul(event: ChangeEvent) -> bool:
    """True when a string of the change (key, before or after) holds a NUL character."""
    return any(
        isinstance(value, str) and "\x00" in value
        for row in (event.key, event.before, event.after)
        if row
        for value in (*row.values(), *row.keys())
    )


def _nested_nul(value: Any) -> bool:
    """True when a string anywhere in ``value`` (keys included) holds a NUL character."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_nested_nul(k) or _nested_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_nested_nul(v) for v in value)
    return False


def _unstorable(record: ConsumedRecord, what: str, schema_id: int | None) -> DeadLetter:
    error = UnstorableValueError(
        f"{what} at {record.topic}/{record.partition}/{record.offset} holds a NUL "
        "character, which PostgreSQL text and jsonb cannot store; the record is kept byte "
        "for byte in the dead-letter topic"
    )
    if record.origin is None:  # planned without its bytes: nothing to dead-letter with
        raise error
    return dead_letter(record.origin, error, schema_id)


def _fold_silver(
    changes: dict[tuple[Any, ...], SilverChange],
    spec: TableSpec,
    record: ConsumedRecord,
    event: ChangeEvent,
    bronze_id: uuid.UUID,
) -> None:
    is_delete = event.op is Operation.DELETE
    source_row = (event.before if is_delete else event.after) or {}
    if is_delete and event.key:  # a key-only before image: the key is authoritative
        source_row = {**source_row, **event.key}
    row = spec.silver_row(source_row)
    key = spec.key_of(row)
    previous = changes.get(key)
    lsn = event.position.lsn or 0
    if previous is not None and (lsn, record.offset) < (previous.lsn, previous.offset):
        # Older than the key's change already in this batch (a re-snapshot's read emitted
        # after a later delete): it loses here exactly as the silver upsert's (LSN, offset)
        # guard makes it lose across batches.
        return
    unchanged: set[str] = set()
    for column, value in row.items():
        if value is UNCHANGED:  # a singleton, also across pickling (records/unchanged.py)
            earlier = previous.row.get(column) if previous else None
            if previous is not None and column not in previous.unchanged:
                row[column] = earlier
            else:
                row[column] = None
                unchanged.add(column)
    if is_delete:
        row["deleted_at"] = row.get("deleted_at") or event.committed_at
    changes[key] = SilverChange(
        row=row,
        unchanged=unchanged,
        hard_deleted=is_delete,
        lsn=lsn,
        partition=record.partition,
        offset=record.offset,
        tx_id=event.position.tx_id,
        committed_at=event.committed_at,
        bronze_id=bronze_id,
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Unchanged):
        return {"__debezium_unavailable_value": True}
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__} into bronze raw_payload")
