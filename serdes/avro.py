"""Avro bodies with registry framing: decode and encode, schemas parsed once per id.

Parsing a schema is far slower than reading a record, so parsed schemas are cached by
registry id; the registry is asked only on the first record of each schema.
"""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro

from config.errors import PermanentError
from serdes.framing import Framing, frame, unframe
from serdes.registry import RegistryClient


class AvroDecodeError(PermanentError):
    """The body does not match its writer schema (truncated or corrupt bytes)."""


def parse_schema(schema_text: str) -> Any:
    """Parse Avro schema JSON text into fastavro's parsed form."""
    return fastavro.parse_schema(json.loads(schema_text))


class AvroCodec:
    """Decode and encode registry-framed Avro records."""

    def __init__(self, registry: RegistryClient, framing: Framing = Framing.CONFLUENT) -> None:
        self._registry = registry
        self._framing = framing
        self._parsed: dict[int, Any] = {}

    def writer_schema(self, schema_id: int) -> Any:
        """The parsed writer schema for ``schema_id`` (fetched and parsed once)."""
        parsed = self._parsed.get(schema_id)
        if parsed is None:
            parsed = parse_schema(self._registry.schema_by_id(schema_id))
            self._parsed[schema_id] = parsed
        return parsed

    def decode(self, data: bytes) -> tuple[int, Any]:
        """Schema id and decoded record of framed Avro bytes."""
        framed = unframe(data, self._framing)
        schema = self.writer_schema(framed.schema_id)
        try:
            record = fastavro.schemaless_reader(io.BytesIO(framed.body), schema, None)
        except (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
            raise AvroDecodeError(
                f"Avro body does not match writer schema {framed.schema_id}: {exc}"
            ) from exc
        return framed.schema_id, record

    def encode(self, schema_id: int, record: Any) -> bytes:
        """Framed Avro bytes of ``record`` written with schema ``schema_id``."""
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, self.writer_schema(schema_id), record)
        return frame(schema_id, buffer.getvalue(), self._framing)
