"""The decoded change records every part shares: sinks, tables and caches import these, never
the decoder (``serdes/``) that builds them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from records import images
from records.images import Image
from records.unchanged import UNCHANGED


class Operation(StrEnum):
    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"  # snapshot
    TRUNCATE = "t"
    MESSAGE = "m"  # pg_logical_emit_message


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where in PostgreSQL's WAL a change comes from: the dedup and ordering key."""

    lsn: int | None
    tx_id: int | None
    #: ``source.sequence``: (LSN of the last commit, LSN of this event), either may be None.
    last_commit_lsn: int | None
    sequence_lsn: int | None
    #: ``source.snapshot``: "false" for streaming, else true/first/last/incremental/...
    snapshot: str = "false"

    @property
    def is_snapshot(self) -> bool:
        return self.snapshot != "false"


@dataclass(frozen=True, slots=True)
class TransactionBlock:
    """``transaction`` (with ``provide.transaction.metadata=true``)."""

    id: str
    total_order: int
    data_collection_order: int


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    """The payload of an ``op = m`` event (``pg_logical_emit_message``)."""

    prefix: str
    content: bytes
    #: Emitted with ``transactional = true``: delivered at its transaction's commit, with the
    #: transaction's id (``source.txId``) and counted in its END record. A non-transactional
    #: message is delivered at once, even when its transaction later rolls back.
    transactional: bool = False


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One decoded Debezium change. Rows are dicts of exact Python values; a column whose
    value is ``UNCHANGED`` was left out by PostgreSQL (keep the previous value)."""

    op: Operation
    schema: str
    table: str
    key: Mapping[str, Any] | None
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    position: SourcePosition
    #: When the change committed in PostgreSQL (``source.ts_us``/``ts_ms``, UTC).
    committed_at: datetime
    #: When Debezium processed it (envelope ``ts_us``/``ts_ms``); not for ordering.
    processed_at: datetime | None = None
    transaction: TransactionBlock | None = None
    message: LogicalMessage | None = None
    #: Primary-key change: on the delete, the row's new key; on the create, its old key.
    new_key: Mapping[str, Any] | None = None
    old_key: Mapping[str, Any] | None = None
    schema_id: int | None = None
    #: The writer schema's defaults of NOT NULL columns (shared by all its events): what
    #: Debezium writes in a key-only before-image for a column PostgreSQL did not send.
    column_defaults: Mapping[str, Any] | None = None

    @property
    def has_unchanged(self) -> bool:
        return self.after is not None and images.has_unchanged(self.after)

    # Image completeness is computed on access, never while decoding: most consumers never
    # ask, and the decode loop is the hot path (DESIGN.md section 12).
    @property
    def before_image(self) -> Image:
        """What ``before`` holds: FULL, KEY_ONLY, UNCHANGED_COLUMNS, MISSING or NONE."""
        return images.before_image(self.op.value, self.before, self.key, self.column_defaults)

    @property
    def after_image(self) -> Image:
        """What ``after`` holds: FULL, UNCHANGED_COLUMNS, MISSING or NONE."""
        return images.after_image(self.op.value, self.after)

    @property
    def before_is_partial(self) -> bool:
        """True when the change had an old row (update, delete) and ``before`` does not hold
        all of it: key-only (REPLICA IDENTITY DEFAULT), absent, or with ``UNCHANGED`` columns.
        Then only the key columns (and non-``UNCHANGED`` ones) of ``before`` are facts."""
        return self.before_image in images.PARTIAL

    @property
    def after_is_partial(self) -> bool:
        """True when ``after`` has ``UNCHANGED`` columns (TOAST values left out)."""
        return self.after_image in images.PARTIAL

    @property
    def changed_columns(self) -> frozenset[str] | None:
        """An update's changed columns, when ``before`` is the full old row; else None
        (unknown: never guess from a partial image)."""
        if self.op is not Operation.UPDATE or self.before is None or self.after is None:
            return None
        if self.before_image is not Image.FULL:
            return None
        return images.changed_columns(self.before, self.after)

    def merged_after(self, previous: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """``after`` with every ``UNCHANGED`` column taken from ``previous`` (the stored row).

        A column stays ``UNCHANGED`` when ``previous`` does not know it either: the caller
        must then leave that column alone (partial update), never write the marker.
        """
        if self.after is None:
            return None
        previous = previous or {}
        return {
            column: previous.get(column, UNCHANGED) if value is UNCHANGED else value
            for column, value in self.after.items()
        }


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A null value after a delete (log compaction marker): no change of its own."""

    key: Mapping[str, Any] | None
    new_key: Mapping[str, Any] | None = None


Decoded = ChangeEvent | Tombstone
