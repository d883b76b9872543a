"""Alert messages, pure: what a quality ERROR or a dead letter tells RabbitMQ consumers.

Every alert carries a ``message_id`` derived only from what it is about, never from when or
how often it was sent: a quality alert from the table, the row's key, its version and
source commit time and the ERROR issues; a DLQ notification from the dead-lettered record's
origin (topic, partition, offset). So a batch the sink writes again, a dead letter published
twice or a relay that crashed before committing all repeat the same id, and consumers drop
repeats by id (delivery is at least once; see docs/decisions/0012).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from config.errors import PermanentError
from quality.redaction import json_value
from serdes.dead_letters import (
    ERROR_CLASS,
    ERROR_MESSAGE,
    ORIGIN_OFFSET,
    ORIGIN_PARTITION,
    ORIGIN_TOPIC,
    SCHEMA_ID,
    header,
)

QUALITY_ERROR = "quality.error"
DLQ_RECORD = "dlq.record"


class AlertFormatError(PermanentError):
    """A record on the alerts topic that is not an alert of ours."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One message for the alerts queue."""

    message_id: str
    kind: str
    body: Mapping[str, Any]

    def encode(self) -> bytes:
        return orjson.dumps(
            {"message_id": self.message_id, "kind": self.kind, **self.body}, default=json_value
        )


def decode_alert(data: bytes | None) -> Alert:
    """An alert read back from the alerts topic."""
    try:
        decoded = orjson.loads(data or b"")
        message_id, kind = decoded.pop("message_id"), decoded.pop("kind")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise AlertFormatError(f"not an alert: {(data or b'')[:80]!r}") from exc
    return Alert(str(message_id), str(kind), decoded)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def quality_alerts(
    table: str,
    key_columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    issues: Sequence[Sequence[str]],
    event_times: Sequence[datetime],
) -> list[Alert]:
    """One alert per row with at least one ERROR issue (issues are ``SEVERITY:TYPE:column``)."""
    alerts = []
    for row, row_issues, event_time in zip(rows, issues, event_times, strict=True):
        errors = sorted(issue for issue in row_issues if issue.startswith("ERROR:"))
        if not errors:
            continue
        key = {column: json_value(row.get(column)) for column in key_columns}
        version = row.get("version")
        message_id = "quality:" + _digest(
            table,
            orjson.dumps(key, option=orjson.OPT_SORT_KEYS).decode(),
            str(version),
            event_time.isoformat(),
            ",".join(errors),
        )
        body = {
            "table": table,
            "key": key,
            "version": version,
            "source_committed_at": event_time.isoformat(),
            "issues": errors,
        }
        alerts.append(Alert(message_id, QUALITY_ERROR, body))
    return alerts


def dlq_notification(
    dlq_topic: str, partition: int, offset: int, headers: Sequence[tuple[str, bytes | None]]
) -> Alert:
    """What one record on a ``<topic>.dlq`` says about itself (never its bytes: PII)."""
    origin_topic = header(headers, ORIGIN_TOPIC)
    origin_partition = header(headers, ORIGIN_PARTITION)
    origin_offset = header(headers, ORIGIN_OFFSET)
    if origin_topic is not None and origin_partition is not None and origin_offset is not None:
        message_id = f"dlq:{origin_topic}:{origin_partition}:{origin_offset}"
        origin: dict[str, Any] | None = {
            "topic": origin_topic,
            "partition": int(origin_partition),
            "offset": int(origin_offset),
        }
    else:  # a dead letter without our headers: name it by its own position
        message_id, origin = f"dlq:{dlq_topic}:{partition}:{offset}", None
    schema_id = header(headers, SCHEMA_ID)
    body = {
        "dlq": {"topic": dlq_topic, "partition": partition, "offset": offset},
        "origin": origin,
        "error_class": header(headers, ERROR_CLASS),
        "error_message": header(headers, ERROR_MESSAGE),
        "schema_id": int(schema_id) if schema_id and schema_id.isdigit() else None,
    }
    return Alert(message_id, DLQ_RECORD, body)
