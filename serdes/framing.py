"""Schema-registry framing of Kafka record bytes: which schema id a payload was written with.

Three framings exist in the wild (debezium-postgres.md section 5.1):

* Confluent wire format: magic byte 0, a 4-byte big-endian schema id, the Avro body.
  Apicurio writes the same with ``as-confluent=true`` (its id is then the content id,
  which the Confluent-compatible API serves as the schema id).
* Apicurio legacy: magic byte 0, an 8-byte id (Apicurio 2.x default: the global id).
* Apicurio headers: the body is bare Avro; the id is an 8-byte big-endian long in the
  header ``apicurio.<key|value>.globalId`` (or ``.contentId``).

Nothing here touches the network: it is the pure core both the decoder and the encoder
rely on, and it refuses bytes that do not fit rather than guess.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from config.errors import FramingError

MAGIC_BYTE = 0
Headers = Sequence[tuple[str, bytes | None]]


class Framing(Enum):
    """How a schema id travels with the payload."""

    CONFLUENT = "confluent"  # magic 0 + 4-byte id (Apicurio as-confluent, Confluent)
    APICURIO_LEGACY = "apicurio-legacy"  # magic 0 + 8-byte id
    APICURIO_HEADERS = "apicurio-headers"  # bare body, 8-byte id in a record header

    @property
    def id_format(self) -> str:
        return ">I" if self is Framing.CONFLUENT else ">Q"

    @property
    def header_size(self) -> int:
        """Bytes in front of the body (0 when the id travels in headers)."""
        return _HEADER_SIZES[self]


class IdKind(Enum):
    """Which registry id a framing carries: they resolve through different endpoints."""

    CONTENT = "content"  # Confluent schema id == Apicurio content id (ccompat /schemas/ids)
    GLOBAL = "global"  # Apicurio global id (v2 /ids/globalIds)


@dataclass(frozen=True, slots=True)
class FramedPayload:
    """A schema id and the body it frames."""

    schema_id: int
    body: bytes
    framing: Framing
    id_kind: IdKind = IdKind.CONTENT


#: Magic byte plus id width, computed once: ``unframe`` runs for every record's key and value.
_HEADER_SIZES = {Framing.CONFLUENT: 5, Framing.APICURIO_LEGACY: 9, Framing.APICURIO_HEADERS: 0}
_CONFLUENT = Framing.CONFLUENT
_CONTENT, _GLOBAL = IdKind.CONTENT, IdKind.GLOBAL


def unframe(data: bytes | None, framing: Framing = Framing.CONFLUENT) -> FramedPayload:
    """Split framed bytes into schema id and body; malformed input raises ``FramingError``."""
    if data is None:
        raise FramingError("record has no value (tombstone): nothing to unframe")
    if framing is not _CONFLUENT and framing is Framing.APICURIO_HEADERS:
        raise FramingError("the apicurio-headers framing needs the record headers: use detect")
    size = 5 if framing is _CONFLUENT else _HEADER_SIZES[framing]
    if len(data) < size:
        raise FramingError(
            f"record of {len(data)} bytes is shorter than the {framing.value} header "
            f"({size} bytes): not registry-framed"
        )
    if data[0] != MAGIC_BYTE:
        raise FramingError(
            f"record starts with byte {data[0]:#04x}, not the magic byte 0x00: "
            f"not {framing.value}-framed (plain JSON or another serializer?)"
        )
    body = data[size:]
    return FramedPayload(
        int.from_bytes(data[1:size]),
        body if type(body) is bytes else bytes(body),
        framing,
        _CONTENT if framing is _CONFLUENT else _GLOBAL,
    )


def header_names(side: str) -> tuple[str, str]:
    """Apicurio's global-id and content-id header names for ``side`` (``key``/``value``)."""
    return f"apicurio.{side}.globalId", f"apicurio.{side}.contentId"


def detect(
    data: bytes | None,
    headers: Headers | None = None,
    *,
    side: str = "value",
    legacy_id_kind: IdKind = IdKind.GLOBAL,
) -> FramedPayload:
    """Find the framing of ``data`` by itself and split it.

    Apicurio id headers mean a bare body. Otherwise the payload must start with the magic
    byte; a 4-byte id of 0 is never assigned (registries count from 1), while an 8-byte id
    below 2^32 always starts with four zero bytes, so ``00 00 00 00 00`` means 8-byte ids.
    """
    if data is None:
        raise FramingError("record has no value (tombstone): nothing to unframe")
    if headers:
        global_name, content_name = header_names(side)
        for name, raw in headers:
            if name in (global_name, content_name):
                if raw is None or len(raw) != 8:
                    raise FramingError(f"header {name} is not an 8-byte id: {raw!r}")
                kind = IdKind.GLOBAL if name == global_name else IdKind.CONTENT
                (schema_id,) = struct.unpack(">Q", raw)
                return FramedPayload(schema_id, bytes(data), Framing.APICURIO_HEADERS, kind)
    framed = unframe(data, Framing.CONFLUENT)
    if framed.schema_id == 0 and len(data) >= Framing.APICURIO_LEGACY.header_size:
        legacy = unframe(data, Framing.APICURIO_LEGACY)
        return FramedPayload(legacy.schema_id, legacy.body, legacy.framing, legacy_id_kind)
    return framed


def frame(schema_id: int, body: bytes, framing: Framing = Framing.CONFLUENT) -> bytes:
    """Prefix ``body`` with the magic byte and ``schema_id`` in ``framing``'s width."""
    if framing is Framing.APICURIO_HEADERS:
        raise FramingError("the apicurio-headers framing puts the id in headers: use encode")
    limit = 2 ** (8 * (framing.header_size - 1))
    if not 0 <= schema_id < limit:
        raise FramingError(f"schema id {schema_id} does not fit the {framing.value} framing")
    return bytes([MAGIC_BYTE]) + struct.pack(framing.id_format, schema_id) + body


def encode(
    schema_id: int,
    body: bytes,
    framing: Framing = Framing.CONFLUENT,
    *,
    side: str = "value",
    id_kind: IdKind = IdKind.CONTENT,
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Payload and headers carrying ``schema_id`` in ``framing`` (headers only for Apicurio's)."""
    if framing is not Framing.APICURIO_HEADERS:
        return frame(schema_id, body, framing), []
    if not 0 <= schema_id < 2**63:
        raise FramingError(f"schema id {schema_id} does not fit an 8-byte id header")
    global_name, content_name = header_names(side)
    name = global_name if id_kind is IdKind.GLOBAL else content_name
    return body, [(name, struct.pack(">Q", schema_id)), (f"apicurio.{side}.encoding", b"BINARY")]
