"""Dead letters: records we cannot decode or validate, kept byte for byte in ``<topic>.dlq``.

Pure: this builds the dead letter (origin bytes untouched, headers of DESIGN.md section 4)
and reads its headers; ``sinks/kafka/dead_letters.py`` produces it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from quality.redaction import redact_text

ERROR_CLASS = "bv.error.class"
ERROR_MESSAGE = "bv.error.message"
ORIGIN_TOPIC = "bv.origin.topic"
ORIGIN_PARTITION = "bv.origin.partition"
ORIGIN_OFFSET = "bv.origin.offset"
SCHEMA_ID = "bv.schema.id"
REPLAY_OF = "bv.replay.of"
DLQ_SUFFIX = ".dlq"
_MAX_MESSAGE = 1000


@dataclass(frozen=True, slots=True)
class RecordOrigin:
    """Where a consumed record came from, and its bytes exactly as consumed."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record ready for the dead-letter topic."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    reason: str


def dlq_topic(origin_topic: str, suffix: str = DLQ_SUFFIX) -> str:
    return f"{origin_topic}{suffix}"


def dead_letter(
    origin: RecordOrigin,
    error: BaseException,
    schema_id: int | None = None,
    suffix: str = DLQ_SUFFIX,
) -> DeadLetter:
    """The dead letter of ``origin``: its own headers kept, ours (``bv.*``) added.

    The record's bytes stay untouched (a replay needs them), but the error message, which
    ``dlq show`` prints and may quote the record, has personal data masked.
    """
    reason = type(error).__name__
    ours: list[tuple[str, bytes]] = [
        (ERROR_CLASS, reason.encode()),
        (ERROR_MESSAGE, redact_text(str(error)[:_MAX_MESSAGE]).encode("utf-8", "replace")),
        (ORIGIN_TOPIC, origin.topic.encode()),
        (ORIGIN_PARTITION, str(origin.partition).encode()),
        (ORIGIN_OFFSET, str(origin.offset).encode()),
    ]
    if schema_id is not None:
        ours.append((SCHEMA_ID, str(schema_id).encode()))
    kept = tuple((k, v) for k, v in origin.headers if not k.startswith("bv.error."))
    return DeadLetter(
        dlq_topic(origin.topic, suffix), origin.key, origin.value, (*kept, *ours), reason
    )


def header(headers: Sequence[tuple[str, bytes | None]] | None, name: str) -> str | None:
    """The last value of header ``name`` as text, or None."""
    found = None
    for key, value in headers or ():
        if key == name and value is not None:
            found = value.decode("utf-8", "replace")
    return found
