"""Avro bodies with registry framing: decode and encode, schemas parsed once per id.

Parsing a schema is far slower than reading a record, so parsed schemas are cached by
registry id (ids are immutable); the registry is asked only on the first record of each
schema. Evolution: a reader schema may be given, and fastavro resolves each writer schema
against it (added fields take their defaults, removed fields are skipped).
"""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import fastavro

from config.errors import PermanentError
from serdes.framing import FramedPayload, Framing, Headers, IdKind, detect, encode, frame, unframe
from serdes.registry import RegistryClient

#: What fastavro raises on bytes that do not match the schema (it documents none of them).
_BODY_ERRORS = (
    EOFError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    OverflowError,
    MemoryError,
    UnicodeDecodeError,
    struct.error,
)


class AvroDecodeError(PermanentError):
    """The body does not match its writer schema (truncated or corrupt bytes)."""


class SchemaParseError(PermanentError):
    """A schema from the registry or a file is not valid Avro."""


def parse_schema(schema_text: str) -> Any:
    """Parse Avro schema JSON text into fastavro's parsed form."""
    try:
        return fastavro.parse_schema(json.loads(schema_text))
    except (ValueError, TypeError, KeyError, fastavro.schema.SchemaParseException) as exc:
        raise SchemaParseError(f"not a valid Avro schema ({exc}): {schema_text[:200]}") from exc


def read_body(body: bytes, writer: Any, reader: Any = None, *, schema_id: int = -1) -> Any:
    """Decode a bare Avro body; the whole body must be consumed, or it was not this schema."""
    buffer = io.BytesIO(body)
    try:
        record = fastavro.schemaless_reader(buffer, writer, reader)
    except _BODY_ERRORS as exc:
        raise AvroDecodeError(
            f"Avro body of {len(body)} bytes does not match writer schema {schema_id}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if buffer.tell() != len(body):
        raise AvroDecodeError(
            f"Avro body has {len(body) - buffer.tell()} bytes left after a record of writer "
            f"schema {schema_id}: not written with that schema"
        )
    return record


def write_body(schema: Any, record: Any) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    return buffer.getvalue()


class AvroCodec:
    """Decode and encode registry-framed Avro records."""

    def __init__(self, registry: RegistryClient, framing: Framing = Framing.CONFLUENT) -> None:
        self._registry = registry
        self._framing = framing
        self._parsed: dict[tuple[IdKind, int], Any] = {}
        self._text: dict[tuple[IdKind, int], str] = {}

    @property
    def framing(self) -> Framing:
        return self._framing

    def schema_text(self, schema_id: int, id_kind: IdKind = IdKind.CONTENT) -> str:
        """The writer schema's JSON text (fetched once per id)."""
        key = (id_kind, schema_id)
        text = self._text.get(key)
        if text is None:
            if id_kind is IdKind.GLOBAL:
                text = self._registry.schema_by_global_id(schema_id)
            else:
                text = self._registry.schema_by_id(schema_id)
            self._text[key] = text
        return text

    def writer_schema(self, schema_id: int, id_kind: IdKind = IdKind.CONTENT) -> Any:
        """The parsed writer schema for ``schema_id`` (fetched and parsed once)."""
        key = (id_kind, schema_id)
        parsed = self._parsed.get(key)
        if parsed is None:
            parsed = parse_schema(self.schema_text(schema_id, id_kind))
            self._parsed[key] = parsed
        return parsed

    def unframe(self, data: bytes | None, headers: Headers | None = None) -> FramedPayload:
        """Schema id and body of ``data`` in whichever framing it carries."""
        return detect(data, headers)

    def decode(
        self, data: bytes, headers: Headers | None = None, reader: Any = None
    ) -> tuple[int, Any]:
        """Schema id and decoded record of framed Avro bytes (any framing, see ``detect``)."""
        framed = detect(data, headers)
        schema = self.writer_schema(framed.schema_id, framed.id_kind)
        return framed.schema_id, read_body(framed.body, schema, reader, schema_id=framed.schema_id)

    def encode(self, schema_id: int, record: Any) -> bytes:
        """Framed Avro bytes of ``record`` written with schema ``schema_id`` (payload framings)."""
        return frame(schema_id, write_body(self.writer_schema(schema_id), record), self._framing)

    def encode_with_headers(
        self, schema_id: int, record: Any, *, side: str = "value"
    ) -> tuple[bytes, list[tuple[str, bytes]]]:
        """Payload and headers of ``record`` in the configured framing (any of the three)."""
        body = write_body(self.writer_schema(schema_id), record)
        return encode(schema_id, body, self._framing, side=side)


__all__ = [
    "AvroCodec",
    "AvroDecodeError",
    "SchemaParseError",
    "parse_schema",
    "read_body",
    "unframe",
    "write_body",
]
