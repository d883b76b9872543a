"""The connector's transaction metadata topic (``<prefix>.transaction``) -> ``TransactionEvent``.

With ``provide.transaction.metadata=true`` Debezium writes a BEGIN and an END record per
source transaction (checked on the stack, Debezium 3.6.1): ``status``, ``id``, ``ts_ms``, and
on END ``event_count`` and ``data_collections`` (events per ``schema.table``). Pure: the
Avro and JSON decoders read the bytes and hand the payload here.

Two surprises a consumer must know (reference/debezium-postgres.md 3.8):

- ``id`` is ``"<txId>:<LSN>"`` with the LSN taken when the record was built, so BEGIN, END
  and the ``transaction.id`` of each change event of one transaction differ after the
  colon. Group by ``tx_id`` (the part before it), which equals ``source.txId``.
- a transactional logical message is counted under a Java object's name
  (``...LogicalDecodingMessageMonitor$LogicalDecodingMessageId@6f2e1c0``), meaningless
  outside that JVM: such entries are summed under ``MESSAGES_COLLECTION``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from config.errors import EnvelopeError
from serdes.logical_types import timestamp_from_millis

#: ``data_collections`` key under which transactional logical messages are counted.
MESSAGES_COLLECTION = "<logical messages>"
_MESSAGE_MONITOR = "io.debezium.connector.postgresql.LogicalDecodingMessageMonitor$"


class TransactionStatus(StrEnum):
    BEGIN = "BEGIN"
    END = "END"


@dataclass(frozen=True, slots=True)
class TransactionEvent:
    """One BEGIN or END record of the transaction metadata topic."""

    status: TransactionStatus
    #: ``"<txId>:<LSN>"`` exactly as Debezium wrote it.
    id: str
    #: The source transaction's commit time (``ts_ms``, UTC; the ``source.ts_ms`` of its events).
    committed_at: datetime
    #: END only: how many change events the transaction produced (messages included).
    event_count: int | None = None
    #: END only: events per ``schema.table`` (and ``MESSAGES_COLLECTION``); empty on BEGIN.
    data_collections: Mapping[str, int] = field(default_factory=dict)

    @property
    def tx_id(self) -> int | None:
        """PostgreSQL's transaction id: joins ``ChangeEvent.position.tx_id`` and the part of
        ``ChangeEvent.transaction.id`` before the colon."""
        head = self.id.partition(":")[0]
        return int(head) if head.isdigit() else None


def is_transaction_payload(payload: Mapping[str, Any]) -> bool:
    """A transaction metadata value (not a change envelope), by its fields."""
    return "status" in payload and "id" in payload and "op" not in payload


def build_transaction_event(payload: Mapping[str, Any]) -> TransactionEvent:
    """A ``TransactionEvent`` from a decoded value (Avro record or JSON payload)."""
    try:
        status = TransactionStatus(payload["status"])
        transaction_id = payload["id"]
        if not isinstance(transaction_id, str):
            raise EnvelopeError(f"transaction id {transaction_id!r} is not a string")
        count = payload.get("event_count")
        collections: dict[str, int] = {}
        for entry in payload.get("data_collections") or ():
            if entry is None:
                continue
            name = str(entry["data_collection"])
            if name.startswith(_MESSAGE_MONITOR):
                name = MESSAGES_COLLECTION
            collections[name] = collections.get(name, 0) + int(entry["event_count"])
        return TransactionEvent(
            status,
            transaction_id,
            timestamp_from_millis(payload["ts_ms"]),
            None if count is None else int(count),
            collections,
        )
    except EnvelopeError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as exc:
        raise EnvelopeError(
            f"not a Debezium transaction metadata record ({type(exc).__name__}: {exc}); "
            f"fields: {sorted(payload)[:12] if isinstance(payload, Mapping) else '?'}"
        ) from exc
