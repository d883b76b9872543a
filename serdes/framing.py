"""Schema-registry framing of Kafka record bytes: which schema id a payload was written with.

Confluent wire format: magic byte 0, then the schema id as a 4-byte big-endian unsigned
integer, then the Avro body. Apicurio's legacy framing is the same with an 8-byte id
(its global id). Nothing here touches the network: it is the pure core both the
decoder and the encoder rely on, and it refuses bytes that do not fit rather than guess.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

from config.errors import FramingError

MAGIC_BYTE = 0


class Framing(Enum):
    """How a schema id travels with the payload."""

    CONFLUENT = "confluent"  # magic 0 + 4-byte id (Apicurio 3 default, Confluent)
    APICURIO_LEGACY = "apicurio-legacy"  # magic 0 + 8-byte id

    @property
    def id_format(self) -> str:
        return ">I" if self is Framing.CONFLUENT else ">Q"

    @property
    def header_size(self) -> int:
        return 1 + struct.calcsize(self.id_format)


@dataclass(frozen=True, slots=True)
class FramedPayload:
    """A schema id and the body it frames."""

    schema_id: int
    body: bytes
    framing: Framing


def unframe(data: bytes | None, framing: Framing = Framing.CONFLUENT) -> FramedPayload:
    """Split framed bytes into schema id and body; malformed input raises ``FramingError``."""
    if data is None:
        raise FramingError("record has no value (tombstone): nothing to unframe")
    if len(data) < framing.header_size:
        raise FramingError(
            f"record of {len(data)} bytes is shorter than the {framing.value} header "
            f"({framing.header_size} bytes): not registry-framed"
        )
    if data[0] != MAGIC_BYTE:
        raise FramingError(
            f"record starts with byte {data[0]:#04x}, not the magic byte 0x00: "
            f"not {framing.value}-framed (plain JSON or another serializer?)"
        )
    (schema_id,) = struct.unpack_from(framing.id_format, data, 1)
    return FramedPayload(schema_id, bytes(data[framing.header_size :]), framing)


def frame(schema_id: int, body: bytes, framing: Framing = Framing.CONFLUENT) -> bytes:
    """Prefix ``body`` with the magic byte and ``schema_id`` in ``framing``'s width."""
    limit = 2 ** (8 * (framing.header_size - 1))
    if not 0 <= schema_id < limit:
        raise FramingError(f"schema id {schema_id} does not fit the {framing.value} framing")
    return bytes([MAGIC_BYTE]) + struct.pack(framing.id_format, schema_id) + body
