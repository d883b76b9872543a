"""Debezium PostgreSQL envelopes -> typed ``ChangeEvent`` records (Avro through the registry).

One ``DebeziumAvroDecoder`` per process: it compiles a field plan once per writer schema id
and then decodes each record with one fastavro read plus a loop over the planned columns.
Tombstones (null values) become ``Tombstone``, not errors; primary-key changes carry the
other key from Debezium's ``__debezium.newkey``/``__debezium.oldkey`` headers; unchanged
TOAST columns are ``UNCHANGED``. Anything undecodable raises a ``PermanentError`` (dead
letter); a registry that cannot be reached raises ``RegistryUnavailableError`` (retry).
How complete ``before``/``after`` are and which columns an update changed are properties
computed on access (``records/images.py``), so they cost nothing in the decode loop. The
transaction topic's BEGIN/END records decode to ``TransactionEvent`` (``serdes/transactions.py``).
See docs/decoder.md for what a downstream consumer does with each field.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from config.errors import EnvelopeError as EnvelopeError  # re-exported: callers import it here
from records.change_events import (
    ChangeEvent,
    Decoded,
    LogicalMessage,
    Operation,
    SourcePosition,
    Tombstone,
    TransactionBlock,
)
from serdes.avro import AvroCodec, read_body
from serdes.field_plan import (
    RowDefaults,
    RowPlan,
    apply_row,
    compile_avro_defaults,
    compile_avro_row,
)
from serdes.framing import Headers, IdKind, detect
from serdes.logical_types import timestamp_from_micros, timestamp_from_millis
from serdes.transactions import (
    TransactionEvent,
    build_transaction_event,
    is_transaction_payload,
)

NEW_KEY_HEADER = "__debezium.newkey"
OLD_KEY_HEADER = "__debezium.oldkey"
_OPERATIONS = {op.value: op for op in Operation}
#: Appended to the error of a transaction record fed to ``decode`` (a dead letter there).
TRANSACTION_HINT = (
    ": it is a transaction metadata record (BEGIN/END); decode it with decode_transaction"
    " or decode_any"
)


# -- pure envelope -> ChangeEvent ----------------------------------------------------------
def _lsn(text: str) -> int | None:
    text = text.strip()
    if text == "null" or not text:
        return None
    return int(text.strip('"'))


def parse_sequence(sequence: str | None) -> tuple[int | None, int | None]:
    """``source.sequence`` (a JSON array of two LSN strings inside a string)."""
    if not sequence:
        return None, None
    body = sequence.strip()
    if not (body.startswith("[") and body.endswith("]")):
        raise EnvelopeError(f"source.sequence {sequence!r} is not a JSON array")
    parts = body[1:-1].split(",")
    if len(parts) != 2:
        raise EnvelopeError(f"source.sequence {sequence!r} does not hold two LSNs")
    try:
        return _lsn(parts[0]), _lsn(parts[1])
    except ValueError as exc:
        raise EnvelopeError(f"source.sequence {sequence!r} holds a non-numeric LSN") from exc


def _instant(micros: Any, millis: Any) -> datetime | None:
    if micros is not None:
        return timestamp_from_micros(micros)
    if millis is not None:
        return timestamp_from_millis(millis)
    return None


def header_key(headers: Headers | None, name: str) -> Mapping[str, Any] | None:
    """A key Debezium put in a header (``SimpleHeaderConverter`` writes it as JSON text)."""
    if not headers:
        return None
    for header, raw in headers:
        if header == name and raw is not None:
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise EnvelopeError(f"header {name} is not JSON: {raw[:80]!r}") from exc
            return value if isinstance(value, dict) else {"value": value}
    return None


def build_change_event(
    envelope: Mapping[str, Any],
    key: Mapping[str, Any] | None,
    headers: Headers | None = None,
    schema_id: int | None = None,
    column_defaults: Mapping[str, Any] | None = None,
) -> ChangeEvent:
    """A ``ChangeEvent`` from an envelope whose rows are already converted."""
    try:
        op = _OPERATIONS[envelope["op"]]
        source = envelope["source"]
        first, second = parse_sequence(source.get("sequence"))
        position = SourcePosition(
            source.get("lsn"),
            source.get("txId"),
            first,
            second,
            source.get("snapshot") or "false",
        )
        committed_at = _instant(source.get("ts_us"), source.get("ts_ms"))
        if committed_at is None:
            raise EnvelopeError("source has neither ts_us nor ts_ms")
        transaction = _transaction_block(envelope.get("transaction"))
        logical_message = _logical_message(envelope.get("message"), position)
        return ChangeEvent(
            op,
            str(source.get("schema", "")),
            str(source.get("table", "")),
            key,
            envelope.get("before"),
            envelope.get("after"),
            position,
            committed_at,
            _instant(envelope.get("ts_us"), envelope.get("ts_ms")),
            transaction,
            logical_message,
            header_key(headers, NEW_KEY_HEADER) if op is Operation.DELETE else None,
            header_key(headers, OLD_KEY_HEADER) if op is Operation.CREATE else None,
            schema_id,
            column_defaults,
        )
    except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as exc:
        if isinstance(exc, EnvelopeError):
            raise
        raise EnvelopeError(
            f"not a Debezium change envelope ({type(exc).__name__}: {exc}); "
            f"fields: {sorted(envelope)[:12] if isinstance(envelope, Mapping) else '?'}"
        ) from exc


def _transaction_block(block: Mapping[str, Any] | None) -> TransactionBlock | None:
    if not block:
        return None
    return TransactionBlock(
        str(block["id"]), int(block["total_order"]), int(block["data_collection_order"])
    )


def _logical_message(
    message: Mapping[str, Any] | None, position: SourcePosition
) -> LogicalMessage | None:
    """An ``op = m`` payload; transactional when it carries its transaction's id."""
    if not message:
        return None
    content = message.get("content") or b""
    if isinstance(content, str):  # JSON: base64 (binary.handling.mode=bytes)
        content = base64.b64decode(content, validate=True)
    return LogicalMessage(str(message.get("prefix")), bytes(content), position.tx_id is not None)


# -- Avro -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EnvelopePlan:
    """What one writer schema needs: the parsed schema and the row plans."""

    parsed: Any
    row: RowPlan
    #: A key or other plain record (not an envelope) uses ``row`` on the record itself.
    is_envelope: bool
    #: A transaction metadata value (BEGIN/END): no rows, ``serdes.transactions`` reads it.
    is_transaction: bool = False
    #: Decoded defaults of the row's NOT NULL columns (``ChangeEvent.column_defaults``).
    defaults: RowDefaults | None = None


def compile_envelope_plan(schema_text: str, parsed: Any) -> EnvelopePlan:
    """The plan of a Debezium Avro value (``Envelope``) or key schema."""
    schema = json.loads(schema_text)
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise EnvelopeError(f"writer schema is not an Avro record: {schema_text[:120]}")
    named: dict[str, Any] = {}
    fields = {field["name"]: field for field in schema["fields"]}
    if {"op", "source"} <= fields.keys():
        if "before" not in fields:  # logical message (op = m): no rows
            return EnvelopePlan(parsed, (), True)
        row_type = fields["before"]["type"]
        row_type = (
            next(t for t in row_type if t != "null") if isinstance(row_type, list) else row_type
        )
        if not isinstance(row_type, dict):
            raise EnvelopeError(f"envelope's before is not an inline record: {row_type!r}")
        row = compile_avro_row(row_type, named)
        return EnvelopePlan(parsed, row, True, defaults=compile_avro_defaults(row_type, row))
    if is_transaction_payload(fields):
        return EnvelopePlan(parsed, (), False, is_transaction=True)
    return EnvelopePlan(parsed, compile_avro_row(schema, named), False)


class DebeziumAvroDecoder:
    """Decode Debezium Avro records (any registry framing) into ``ChangeEvent``/``Tombstone``,
    and the transaction topic's records into ``TransactionEvent`` (``decode_transaction``;
    ``decode_any`` for a consumer reading both kinds of topic)."""

    def __init__(self, codec: AvroCodec) -> None:
        self._codec = codec
        self._plans: dict[tuple[IdKind, int], EnvelopePlan] = {}

    def plan(self, schema_id: int, id_kind: IdKind = IdKind.CONTENT) -> EnvelopePlan:
        cache_key = (id_kind, schema_id)
        plan = self._plans.get(cache_key)
        if plan is None:
            text = self._codec.schema_text(schema_id, id_kind)
            plan = compile_envelope_plan(text, self._codec.writer_schema(schema_id, id_kind))
            self._plans[cache_key] = plan
        return plan

    def decode_key(self, data: bytes | None, headers: Headers | None = None) -> Any:
        """The decoded record key (a dict of primary-key columns), or None."""
        if data is None:
            return None
        framed = detect(data, headers, side="key")
        plan = self.plan(framed.schema_id, framed.id_kind)
        record = read_body(framed.body, plan.parsed, schema_id=framed.schema_id)
        if isinstance(record, dict):
            apply_row(plan.row, record)
        return record

    def _read_value(self, value: bytes, headers: Headers | None) -> tuple[int, EnvelopePlan, Any]:
        """(writer schema id, its plan, the record as fastavro reads it) of a value."""
        framed = detect(value, headers)
        plan = self.plan(framed.schema_id, framed.id_kind)
        return (
            framed.schema_id,
            plan,
            read_body(framed.body, plan.parsed, schema_id=framed.schema_id),
        )

    def decode(
        self, key: bytes | None, value: bytes | None, headers: Headers | None = None
    ) -> Decoded:
        """One Kafka record -> ``ChangeEvent`` (or ``Tombstone`` for a null value)."""
        decoded_key = self.decode_key(key, headers)
        if value is None:
            return Tombstone(decoded_key, header_key(headers, NEW_KEY_HEADER))
        schema_id, plan, envelope = self._read_value(value, headers)
        if not plan.is_envelope:
            raise EnvelopeError(
                f"value written with schema {schema_id} is not a Debezium envelope"
                + (TRANSACTION_HINT if plan.is_transaction else "")
            )
        row = plan.row
        before = envelope.get("before")
        if before is not None:
            apply_row(row, before)
        after = envelope.get("after")
        if after is not None:
            apply_row(row, after)
        return build_change_event(envelope, decoded_key, headers, schema_id, plan.defaults)

    def decode_transaction(
        self, key: bytes | None, value: bytes | None, headers: Headers | None = None
    ) -> TransactionEvent:
        """One record of the transaction metadata topic -> ``TransactionEvent``. The key
        (``{id}``) repeats the value's id and is not read."""
        if value is None:
            raise EnvelopeError("a transaction metadata record has a value; this one is null")
        schema_id, plan, record = self._read_value(value, headers)
        if not plan.is_transaction:
            raise EnvelopeError(
                f"value written with schema {schema_id} is not a transaction "
                "metadata record (status, id, data_collections)"
            )
        return build_transaction_event(record)

    def decode_any(
        self, key: bytes | None, value: bytes | None, headers: Headers | None = None
    ) -> Decoded | TransactionEvent:
        """A change event, tombstone or transaction record, whichever the writer schema says."""
        if value is not None:
            framed = detect(value, headers)
            if self.plan(framed.schema_id, framed.id_kind).is_transaction:
                return self.decode_transaction(key, value, headers)
        return self.decode(key, value, headers)
