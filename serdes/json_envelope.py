"""Debezium envelopes from Kafka Connect's JsonConverter -> the same ``ChangeEvent``.

With ``schemas.enable=true`` each record carries its schema, so semantic types are found by
name exactly as in Avro (plans are cached per distinct schema text). With
``schemas.enable=false`` the names are gone: a decimal is just base64 text. Pass a per-table
column type map (``compile_column_types``) for those columns, or configure the connector
with ``decimal.handling.mode=string``; without a map the values stay as JSON gives them
(the TOAST placeholder in text columns still becomes ``UNCHANGED``).

The transaction topic decodes to ``TransactionEvent`` in all three forms the connector's
records take: ``{"schema": ..., "payload": ...}``, the bare payload, and ``{"schema": null,
"payload": ...}`` (what some pipelines make of it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from records.change_events import Decoded, Tombstone
from serdes.debezium import (
    NEW_KEY_HEADER,
    TRANSACTION_HINT,
    EnvelopeError,
    build_change_event,
    header_key,
)
from serdes.field_plan import (
    RowDefaults,
    RowPlan,
    apply_row,
    compile_connect_defaults,
    compile_connect_row,
)
from serdes.framing import Headers
from serdes.logical_types import unchanged_if_placeholder
from serdes.transactions import TransactionEvent, build_transaction_event, is_transaction_payload

_MAX_CACHED_PLANS = 1024


def _loads(data: bytes, what: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"{what} is not JSON ({exc}): {data[:80]!r}") from exc


def _unwrap(document: Any) -> tuple[Any, Any]:
    """(schema, payload) of a JsonConverter document; schema None when schemas are off."""
    if isinstance(document, dict) and "payload" in document and "schema" in document:
        return document["schema"], document["payload"]
    return None, document


class DebeziumJsonDecoder:
    """Decode JsonConverter records (schemas on or off) into ``ChangeEvent``/``Tombstone``,
    and transaction topic records into ``TransactionEvent``."""

    def __init__(self, column_types: Mapping[str, RowPlan] | None = None) -> None:
        """``column_types``: for schemaless JSON, a plan per ``<schema>.<table>``."""
        self._column_types = dict(column_types or {})
        self._plans: dict[bytes, tuple[RowPlan, RowDefaults]] = {}

    def _plan_of(self, schema: Mapping[str, Any]) -> tuple[RowPlan, RowDefaults]:
        """The row plan of a record's schema and its NOT NULL columns' decoded defaults."""
        cache_key = orjson.dumps(schema)
        cached = self._plans.get(cache_key)
        if cached is None:
            fields = {f.get("field"): f for f in schema.get("fields") or ()}
            row_schema = fields.get("before") or fields.get("after") or {}
            if not (schema.get("name", "").endswith(".Envelope") or "op" in fields):
                row_schema = schema
            plan = compile_connect_row(row_schema)
            cached = plan, compile_connect_defaults(row_schema, plan)
            if len(self._plans) >= _MAX_CACHED_PLANS:
                self._plans.clear()
            self._plans[cache_key] = cached
        return cached

    def decode_key(self, data: bytes | None) -> Any:
        if data is None:
            return None
        schema, payload = _unwrap(_loads(data, "key"))
        if isinstance(payload, dict) and schema:
            apply_row(self._plan_of(schema)[0], payload)
        return payload

    def decode(
        self, key: bytes | None, value: bytes | None, headers: Headers | None = None
    ) -> Decoded:
        """One change topic record -> ``ChangeEvent`` (or ``Tombstone``)."""
        decoded = self._decode(key, value, headers, transactions=False)
        if isinstance(decoded, TransactionEvent):  # never: _decode refused it; for the type
            raise EnvelopeError(f"value is not a Debezium change envelope{TRANSACTION_HINT}")
        return decoded

    def decode_transaction(
        self, key: bytes | None, value: bytes | None, headers: Headers | None = None
    ) -> TransactionEvent:
        """One transaction topic record -> ``TransactionEvent`` (the key is not read)."""
        if value is None:
            raise EnvelopeError("a transaction metadata record has a value; this one is null")
        _, payload = _unwrap(_loads(value, "value"))
        if not isinstance(payload, dict) or not is_transaction_payload(payload):
            raise EnvelopeError(
                f"value is not a transaction metadata record (status, id): {value[:80]!r}"
            )
        return build_transaction_event(payload)

    def decode_any(
        self, key: bytes | None, value: bytes | None, headers: Headers | None = None
    ) -> Decoded | TransactionEvent:
        """A change event, tombstone or transaction record, whichever the value is."""
        return self._decode(key, value, headers, transactions=True)

    def _decode(
        self, key: bytes | None, value: bytes | None, headers: Headers | None, *, transactions: bool
    ) -> Decoded | TransactionEvent:
        if value is None:
            return Tombstone(self.decode_key(key), header_key(headers, NEW_KEY_HEADER))
        schema, envelope = _unwrap(_loads(value, "value"))
        if isinstance(envelope, dict) and "op" not in envelope and is_transaction_payload(envelope):
            if transactions:
                return build_transaction_event(envelope)
            raise EnvelopeError(f"value is not a Debezium change envelope{TRANSACTION_HINT}")
        decoded_key = self.decode_key(key)
        if envelope is None:  # {"schema": ..., "payload": null}: a tombstone in disguise
            return Tombstone(decoded_key, header_key(headers, NEW_KEY_HEADER))
        if not isinstance(envelope, dict):
            raise EnvelopeError(f"value is JSON but not an object: {value[:80]!r}")
        defaults: RowDefaults | None = None
        if schema:
            plan: RowPlan | None
            plan, defaults = self._plan_of(schema)
        else:
            source = envelope.get("source") or {}
            plan = self._column_types.get(f"{source.get('schema')}.{source.get('table')}")
        for side in ("before", "after"):
            row = envelope.get(side)
            if isinstance(row, dict):
                if plan is not None:
                    apply_row(plan, row)
                else:
                    _mark_unchanged(row)
        return build_change_event(envelope, decoded_key, headers, None, defaults)


def _mark_unchanged(row: dict[str, Any]) -> None:
    for column, value in row.items():
        row[column] = unchanged_if_placeholder(value)
