"""JSON-lines logs carrying the trace id of the work being done.

One line per event worth logging (a batch committed, a rebalance, a retry), never per
record. The trace id starts as the OLTP transaction's ``correlation_id``
(``SET LOCAL bv.correlation_id``), travels in Kafka headers, lands in bronze, and is put in
a context variable while a batch is handled so every log line of that work carries it.

Header names read, first match wins:
- ``bv.trace_id``: what our own producers write;
- ``bv.correlation_id`` / ``correlation_id``: the OLTP correlation id copied into a header
  (for example by Kafka Connect's ``HeaderFrom`` transform on the Debezium connector);
- ``traceparent``: W3C trace context, as Debezium's tracing integration propagates it; the
  32-hex trace id part is used.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Final

import orjson

from quality.redaction import redact_text

TRACE_HEADER: Final = "bv.trace_id"
CORRELATION_HEADERS: Final = ("bv.correlation_id", "correlation_id")
TRACEPARENT_HEADER: Final = "traceparent"

HeaderValue = bytes | str | None
Headers = Mapping[str, HeaderValue] | Sequence[tuple[str, HeaderValue]] | None

_trace_id: ContextVar[str | None] = ContextVar("bv_trace_id", default=None)

# Attributes every LogRecord has; anything else came in through ``extra=`` and is logged.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def current_trace_id() -> str | None:
    return _trace_id.get()


@contextmanager
def trace_context(trace_id: str | None) -> Iterator[None]:
    """Log lines written inside the block carry ``trace_id``; restored on exit."""
    token = _trace_id.set(trace_id)
    try:
        yield
    finally:
        _trace_id.reset(token)


def _text(value: HeaderValue) -> str | None:
    if value is None:
        return None
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    text = text.strip()
    return text or None


def _as_dict(headers: Headers) -> dict[str, HeaderValue]:
    if headers is None:
        return {}
    if isinstance(headers, Mapping):
        return {str(k).lower(): v for k, v in headers.items()}
    found: dict[str, HeaderValue] = {}
    for name, value in headers:
        found.setdefault(name.lower(), value)  # the first of repeated headers wins
    return found


def trace_id_from_headers(headers: Headers) -> str | None:
    """The trace id carried by a record's headers, or ``None``.

    Accepts confluent-kafka/aiokafka header lists (``[(name, bytes)]``) and Faust's
    header mapping alike. Most records carry no headers: they return at once.
    """
    if not headers:
        return None
    found = _as_dict(headers)
    for name in (TRACE_HEADER, *CORRELATION_HEADERS):
        text = _text(found.get(name))
        if text is not None:
            return text
    return _trace_id_from_traceparent(_text(found.get(TRACEPARENT_HEADER)))


def _trace_id_from_traceparent(value: str | None) -> str | None:
    """The trace-id field of a W3C ``traceparent`` (``00-<32 hex>-<16 hex>-<2 hex>``)."""
    if value is None:
        return None
    parts = value.split("-")
    if len(parts) != 4 or len(parts[1]) != 32:
        return None
    trace = parts[1].lower()
    if trace == "0" * 32 or any(c not in "0123456789abcdef" for c in trace):
        return None
    return trace


def trace_headers(trace_id: str) -> list[tuple[str, bytes]]:
    """Headers to put on a record we produce so the next hop keeps the trace id."""
    return [(TRACE_HEADER, trace_id.encode())]


def distinct_trace_ids(trace_ids: Iterable[str | None], *, limit: int = 20) -> list[str]:
    """Up to ``limit`` distinct trace ids in first-seen order, for one batch's log line."""
    seen: dict[str, None] = {}
    for trace_id in trace_ids:
        if trace_id is not None and trace_id not in seen:
            seen[trace_id] = None
            if len(seen) >= limit:
                break
    return list(seen)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, trace_id, then any ``extra``.

    Text (message, string extras, exception) has personal data masked (``redact_text``):
    an error quoting a record must not copy a customer's email into the logs.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
            "trace_id": getattr(record, "trace_id", None) or _trace_id.get(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in entry:
                entry[key] = redact_text(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "INFO", stream: IO[str] | None = None) -> logging.Handler:
    """Route the ``bitvelocity`` loggers to JSON lines on ``stream`` (stderr by default).

    Call once at process start (the worker command does); returns the handler so a test or
    a second call can remove it.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("bitvelocity")
    logger.setLevel(level)
    logger.addHandler(handler)
    logger.propagate = False
    return handler
