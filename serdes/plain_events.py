"""Plain Avro events for bronze: records that are the event itself, not a change envelope.

The scale-out topics (``chat-messages``, ``device-telemetry``, ``social-posts``) carry
application events in Avro with registry framing. Bronze needs three things from each
beyond its bytes: which bronze table it belongs to, its event time (bronze's partition
key, so it must come from the record, never from the clock: a redelivered record then
lands in the same partition and meets the primary-key guard, DESIGN.md section 5.5) and
its operation. An ``EventSpec`` per topic says how; a record of another Avro type, or
one without a valid event time, is a ``PermanentError`` and so a dead letter.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from config.errors import PermanentError
from config.settings import TopicSettings
from serdes.avro import AvroCodec, read_body
from serdes.framing import Headers

#: 100-ns intervals between the UUID epoch (1582-10-15) and the Unix epoch.
_UUID_EPOCH_OFFSET = 0x01B21DD213814000
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class EventShapeError(PermanentError):
    """A record on an event topic is not the event that topic carries (type or event time)."""


@dataclass(frozen=True, slots=True)
class EventSpec:
    """How one event topic lands in bronze."""

    table: str
    #: The fully qualified Avro record name the topic must carry.
    record_name: str
    event_time: Callable[[Mapping[str, Any]], datetime]
    operation: Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True, slots=True)
class PlainEvent:
    """One decoded event, ready for its bronze row."""

    table: str
    record: dict[str, Any]
    event_time: datetime
    operation: str
    #: The Avro record name (``com.bitvelocity.social.ChatMessage``): what produced the event.
    source_system: str
    schema_id: int
    trace_id: str | None


def timeuuid_time(value: uuid.UUID) -> datetime:
    """The timestamp of a version-1 (time) UUID, as aware UTC, to the microsecond."""
    if value.version != 1:
        raise EventShapeError(f"{value} is a version {value.version} UUID, not a TIMEUUID")
    return _UNIX_EPOCH + timedelta(microseconds=(value.time - _UUID_EPOCH_OFFSET) // 10)


def _field(record: Mapping[str, Any], name: str) -> Any:
    try:
        return record[name]
    except KeyError:
        raise EventShapeError(f"the record has no field {name!r}") from None


def _chat_time(record: Mapping[str, Any]) -> datetime:
    value = _field(record, "messageTime")
    return timeuuid_time(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def _time_field(name: str) -> Callable[[Mapping[str, Any]], datetime]:
    def read(record: Mapping[str, Any]) -> datetime:
        value = _field(record, name)
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise EventShapeError(f"{name!r} is {value!r}, not an aware timestamp")
        return value

    return read


def _inserted(_record: Mapping[str, Any]) -> str:
    return "INSERT"


def _post_operation(record: Mapping[str, Any]) -> str:
    """A post's first version is its INSERT, every later one an UPDATE (soft deletes too)."""
    return "INSERT" if _field(record, "version") == 1 else "UPDATE"


CHAT_MESSAGES = EventSpec(
    "chat_messages", "com.bitvelocity.social.ChatMessage", _chat_time, _inserted
)
DEVICE_TELEMETRY = EventSpec(
    "device_telemetry", "com.bitvelocity.iot.DeviceTelemetry", _time_field("timestamp"), _inserted
)
SOCIAL_POSTS = EventSpec(
    "social_posts", "com.bitvelocity.social.SocialPost", _time_field("updatedAt"), _post_operation
)
#: The bronze tables of warehouse migration 0007.
SCALEOUT_BRONZE_TABLES = tuple(s.table for s in (CHAT_MESSAGES, DEVICE_TELEMETRY, SOCIAL_POSTS))


def scaleout_event_specs(topics: TopicSettings) -> dict[str, EventSpec]:
    """Topic name -> spec, for the three scale-out topics as configured."""
    return {
        topics.chat_messages: CHAT_MESSAGES,
        topics.device_telemetry: DEVICE_TELEMETRY,
        topics.social_posts: SOCIAL_POSTS,
    }


def event_of(spec: EventSpec, record: Any, record_name: str, schema_id: int) -> PlainEvent:
    """The ``PlainEvent`` of a decoded record, or ``EventShapeError``."""
    if record_name != spec.record_name or not isinstance(record, dict):
        raise EventShapeError(
            f"expected a {spec.record_name} record for bronze.{spec.table}, got {record_name} "
            f"(schema id {schema_id})"
        )
    try:
        event_time, operation = spec.event_time(record), spec.operation(record)
    except (TypeError, ValueError, AttributeError) as exc:  # a field of an unexpected shape
        raise EventShapeError(
            f"{record_name} record (schema id {schema_id}) has no valid event time or "
            f"operation for bronze.{spec.table}: {type(exc).__name__}: {exc}"
        ) from exc
    trace = record.get("traceId")
    return PlainEvent(
        table=spec.table,
        record=record,
        event_time=event_time,
        operation=operation,
        source_system=record_name,
        schema_id=schema_id,
        trace_id=trace if isinstance(trace, str) else None,
    )


class PlainEventDecoder:
    """Decodes one event topic's framed Avro values (``decode`` fits ``decode_with_retry``)."""

    def __init__(self, codec: AvroCodec, spec: EventSpec) -> None:
        self._codec = codec
        self.spec = spec

    def decode(
        self, _key: bytes | None, value: bytes | None, headers: Headers | None = None
    ) -> PlainEvent:
        framed = self._codec.unframe(value, headers)
        schema = self._codec.writer_schema(framed.schema_id, framed.id_kind)
        record = read_body(framed.body, schema, schema_id=framed.schema_id)
        # A named type's parsed schema is a dict; a primitive one ("string") is not.
        name = schema.get("name", "?") if isinstance(schema, dict) else str(schema)
        return event_of(self.spec, record, str(name), framed.schema_id)
