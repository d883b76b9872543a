"""What a downstream consumer must be able to read from the decoder, checked on the records of
tests/integration/decoder_sql.py: the unit tests run these checks over output captured once
(tests/unit/data), the integration test over a fresh capture from the stack.

Expected values come from the SQL of decoder_sql.py (by hand) and, for the transaction topic,
from the change topics themselves: an END record must count exactly the events that carry
its transaction id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

from records.change_events import ChangeEvent, Operation, Tombstone
from records.images import Image
from serdes.logical_types import UNCHANGED
from serdes.transactions import MESSAGES_COLLECTION, TransactionEvent, TransactionStatus
from tests.integration import decoder_sql

Record = ChangeEvent | Tombstone | TransactionEvent
#: (topic suffix: a table name, ``transaction`` or ``message``; what the decoder made of it)
Decoded = Sequence[tuple[str, Record]]


def _changes(decoded: Decoded, topic: str, op: Operation) -> list[ChangeEvent]:
    return [e for t, e in decoded if t == topic and isinstance(e, ChangeEvent) and e.op is op]


def _one(decoded: Decoded, topic: str, op: Operation) -> ChangeEvent:
    found = _changes(decoded, topic, op)
    assert len(found) == 1, f"{topic} {op}: {len(found)} events"
    return found[0]


def _transactions(decoded: Decoded, status: TransactionStatus) -> list[TransactionEvent]:
    return [e for _, e in decoded if isinstance(e, TransactionEvent) and e.status is status]


def check_default_identity(decoded: Decoded) -> None:
    """REPLICA IDENTITY DEFAULT: an update has no before-image, a delete only the key."""
    update = _one(decoded, "keyed", Operation.UPDATE)
    assert update.before is None
    assert (update.before_image, update.before_is_partial) == (Image.MISSING, True)
    assert update.changed_columns is None
    assert (update.after_image, update.after_is_partial) == (Image.FULL, False)
    delete = _one(decoded, "keyed", Operation.DELETE)
    assert delete.before is not None
    assert delete.before["id"] == 1
    # the other columns are what Debezium made up: the schema defaults, else zero values
    assert (delete.before["status"], delete.before["version"]) == ("PENDING", 1)
    assert (delete.before["name"], delete.before["qty"], delete.before["note"]) == ("", 0, None)
    assert (delete.before_image, delete.before_is_partial) == (Image.KEY_ONLY, True)
    assert (delete.after_image, delete.after_is_partial) == (Image.NONE, False)
    assert delete.changed_columns is None


def check_default_identity_without_schema(decoded: Decoded) -> None:
    """Schemaless JSON has no column defaults, so the key-only delete of a table whose NOT NULL
    columns have defaults ('PENDING', 1, CURRENT_USER, 9.99) reads as FULL: the documented
    limitation (docs/decoder.md), pinned so a change of it is seen. Updates are unaffected."""
    update = _one(decoded, "keyed", Operation.UPDATE)
    assert (update.before_image, update.before_is_partial) == (Image.MISSING, True)
    delete = _one(decoded, "keyed", Operation.DELETE)
    assert delete.before is not None
    assert (delete.before["status"], delete.before["version"]) == ("PENDING", 1)
    assert delete.before_image is Image.FULL


def check_full_identity(decoded: Decoded) -> None:
    """REPLICA IDENTITY FULL: whole old rows, and the update changed exactly qty and note."""
    update = _one(decoded, "full_rows", Operation.UPDATE)
    assert (update.before_image, update.before_is_partial) == (Image.FULL, False)
    assert (update.after_image, update.after_is_partial) == (Image.FULL, False)
    assert update.changed_columns == frozenset({"qty", "note"})  # SET qty = 6, note = NULL
    delete = _one(decoded, "full_rows", Operation.DELETE)
    assert (delete.before_image, delete.before_is_partial) == (Image.FULL, False)
    assert delete.before is not None
    assert (delete.before["name"], delete.before["qty"], delete.before["note"]) == ("one", 6, None)
    if isinstance(delete.before["price"], Decimal):  # schemaless JSON keeps base64 text
        assert delete.before["price"] == Decimal("1.50")
    for create in _changes(decoded, "keyed", Operation.CREATE):
        assert (create.before_image, create.before_is_partial) == (Image.NONE, False)
        assert (create.after_image, create.after_is_partial) == (Image.FULL, False)


def check_toast(decoded: Decoded) -> None:
    """An update leaving a TOASTed column alone: partial after under DEFAULT, full under FULL."""
    update = _one(decoded, "toasted", Operation.UPDATE)
    assert update.after is not None
    assert update.after["body"] is UNCHANGED
    assert (update.after_image, update.after_is_partial) == (Image.UNCHANGED_COLUMNS, True)
    assert update.before_is_partial
    assert update.changed_columns is None
    full = _one(decoded, "toasted_full", Operation.UPDATE)
    assert (full.before_image, full.after_image) == (Image.FULL, Image.FULL)
    assert full.changed_columns == frozenset({"counter"})
    assert full.after is not None
    assert len(full.after["body"]) == 32 * 100  # 100 md5 hex digests, unchanged


def check_transactions(decoded: Decoded) -> None:
    """BEGIN/END pair per transaction; END counts equal the events carrying its tx id."""
    begins = _transactions(decoded, TransactionStatus.BEGIN)
    ends = _transactions(decoded, TransactionStatus.END)
    assert {b.tx_id for b in begins} == {e.tx_id for e in ends}
    assert len(begins) == len(ends) == len({e.tx_id for e in ends})
    assert all(b.event_count is None and not b.data_collections for b in begins)
    per_transaction: dict[int | None, Counter[str]] = {}
    for topic, event in decoded:
        if isinstance(event, ChangeEvent) and event.position.tx_id is not None:
            name = MESSAGES_COLLECTION if topic == "message" else topic
            per_transaction.setdefault(event.position.tx_id, Counter())[name] += 1
            assert event.transaction is not None
            assert event.transaction.id.split(":")[0] == str(event.position.tx_id)
    assert set(per_transaction) == {e.tx_id for e in ends}
    for end in ends:
        tables = {name.rsplit(".", 1)[-1]: n for name, n in end.data_collections.items()}
        assert tables == dict(per_transaction[end.tx_id]), end
        assert end.event_count == sum(per_transaction[end.tx_id].values())
    inserts = _changes(decoded, "keyed", Operation.CREATE)
    first_tx = {e.position.tx_id for e in inserts}
    assert len(first_tx) == 1  # one transaction inserted both rows
    first = next(e for e in ends if e.tx_id in first_tx)
    assert {
        name.rsplit(".", 1)[-1]: n for name, n in first.data_collections.items()
    } == decoder_sql.FIRST_TRANSACTION_COUNTS
    assert first.event_count == sum(decoder_sql.FIRST_TRANSACTION_COUNTS.values())
    begin = next(b for b in begins if b.tx_id == first.tx_id)
    # ts_ms of BEGIN/END is the commit time the events carry in source.ts_us, to the ms
    assert abs(begin.committed_at - inserts[0].committed_at) < timedelta(milliseconds=1)


def check_messages(decoded: Decoded) -> None:
    """Logical messages carry prefix, content and whether they were transactional."""
    messages = _changes(decoded, "message", Operation.MESSAGE)
    found = {
        (m.message.prefix, m.message.content, m.message.transactional)
        for m in messages
        if m.message is not None
    }
    prefix = decoder_sql.MESSAGE_PREFIX
    assert found == {
        (prefix, b"in a transaction", True),
        (prefix, b"inside, not transactional", False),
        (prefix, b"on its own", False),
    }
    for message in messages:
        assert message.before_image is Image.NONE
        assert message.after_image is Image.NONE


_COMMON_CHECKS = (check_full_identity, check_toast, check_transactions, check_messages)
#: Avro, and JSON with its schema (wrapped as Connect writes it).
ALL_CHECKS = (check_default_identity, *_COMMON_CHECKS)
#: JSON without a schema: bare payloads and ``{"schema": null, ...}``.
SCHEMALESS_CHECKS = (check_default_identity_without_schema, *_COMMON_CHECKS)
