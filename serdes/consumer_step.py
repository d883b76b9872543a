"""One consumed record -> a decoded change or a dead letter; never skipped, never stuck.

The rule of DESIGN.md section 13 and invariant I7: a ``PermanentError`` (undecodable bytes,
unknown schema id, invalid envelope) turns the record into a dead letter and the pipeline
moves on; a ``TransientError`` (registry unreachable) is retried on the *same* record with
backoff until it decodes or the caller's deadline passes, so no record is lost or
dead-lettered because a service was briefly down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from config.errors import FramingError, PermanentError, TransientError
from records.change_events import Decoded
from serdes.dead_letters import DeadLetter, RecordOrigin, dead_letter
from serdes.framing import Headers, detect

Decode = Callable[[bytes | None, bytes | None, Headers | None], Decoded]
#: What a decoder makes of a record: a Debezium change, or a plain event (``plain_events``).
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float = 0.2
    max_s: float = 5.0

    def delay(self, attempt: int) -> float:
        return float(min(self.initial_s * 2**attempt, self.max_s))


def _schema_id(origin: RecordOrigin) -> int | None:
    try:
        return detect(origin.value, origin.headers).schema_id
    except FramingError:
        return None


def decode_or_dead_letter(
    decode: Callable[[bytes | None, bytes | None, Headers | None], T], origin: RecordOrigin
) -> T | DeadLetter:
    """Decode once; a permanent failure becomes the record's dead letter. Transient errors
    propagate (the caller retries the same record)."""
    try:
        return decode(origin.key, origin.value, origin.headers)
    except PermanentError as error:
        return dead_letter(origin, error, _schema_id(origin))


def decode_with_retry(
    decode: Callable[[bytes | None, bytes | None, Headers | None], T],
    origin: RecordOrigin,
    *,
    backoff: Backoff = Backoff(),
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[TransientError, int], None] | None = None,
) -> T | DeadLetter:
    """``decode_or_dead_letter``, retrying transient failures on this same record.

    After ``deadline`` (``time.monotonic()``), the last ``TransientError`` is raised: the
    caller stops without committing past this record, so it is read again later.
    """
    attempt = 0
    while True:
        try:
            return decode_or_dead_letter(decode, origin)
        except TransientError as error:
            if deadline is not None and time.monotonic() >= deadline:
                raise
            if on_retry is not None:
                on_retry(error, attempt)
            sleep(backoff.delay(attempt))
            attempt += 1
