"""The one place where a failed command becomes one ``error:`` line and an exit code.

The root group (``cli.root.BitVelocityGroup``) wraps every command with ``error_line``, so
no command handles these itself: our own errors (``BitVelocityError``), an invalid setting,
and a lost or refused connection to PostgreSQL, Kafka, Redis or an HTTP service (Connect, the
registry) each end as one line on stderr and exit 2, with the cause and the setting that names
the address. Anything else is a bug and keeps its traceback.

Connection errors are recognised by class (the drivers' own transport errors), never by message
text. asyncpg's ``InternalClientError`` counts as a lost connection: asyncpg raises it when its
protocol state machine breaks, which in practice is a server that went away mid-query (e.g.
"cannot switch to state 15" when PostgreSQL stops during ``bitvelocity loadgen``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import redis.exceptions
from confluent_kafka import KafkaError, KafkaException
from pydantic import ValidationError

from config.errors import BitVelocityError

#: librdkafka error codes that mean "the broker could not be reached", not "the request was bad".
KAFKA_TRANSPORT_CODES = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._RESOLVE,
        KafkaError._TIMED_OUT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.REQUEST_TIMED_OUT,
    }
)

_POSTGRES_LOST: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError
    asyncpg.exceptions.OperatorInterventionError,  # admin/crash shutdown, cannot connect now
    asyncpg.exceptions.InternalClientError,
)


@dataclass(frozen=True)
class LostConnection:
    """Which service a command could not reach, why, and the settings naming its address."""

    service: str
    cause: str
    settings: str

    def message(self) -> str:
        return (
            f"lost the connection to {self.service} ({self.cause}); check that it runs "
            f"(`bitvelocity stack status`) and the setting {self.settings}"
        )


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _kafka_code(exc: KafkaException) -> int | None:
    error: Any = exc.args[0] if exc.args else None
    return error.code() if isinstance(error, KafkaError) else None


def _classify(exc: BaseException) -> LostConnection | None:
    """The lost connection ``exc`` itself reports, if it is one (pure)."""
    if isinstance(exc, _POSTGRES_LOST):
        return LostConnection("PostgreSQL", _cause(exc), "BV_POSTGRES__HOST / BV_POSTGRES__PORT")
    if isinstance(exc, KafkaException) and _kafka_code(exc) in KAFKA_TRANSPORT_CODES:
        return LostConnection("Kafka", _cause(exc), "BV_KAFKA__BOOTSTRAP_SERVERS")
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return LostConnection("Redis", _cause(exc), "BV_REDIS__HOST / BV_REDIS__PORT")
    if isinstance(exc, httpx.TransportError):
        try:
            url = str(exc.request.url)
        except RuntimeError:  # raised by httpx when the error carries no request
            url = "an HTTP service"
        return LostConnection(url, _cause(exc), "BV_CONNECT__URL / BV_REGISTRY__URL")
    # A bare OSError is how asyncio and asyncpg report a refused connect ("Multiple
    # exceptions: [Errno 111] Connect call failed"); its subclasses such as
    # FileNotFoundError are not connection problems and keep their traceback.
    if isinstance(exc, BrokenPipeError):  # our own stdout closed (`| head`), not a service
        return None
    if type(exc) is OSError or isinstance(exc, ConnectionError | socket.gaierror):
        return LostConnection(
            "a service", _cause(exc), "BV_*__HOST / BV_*__PORT of the service named above"
        )
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, the exceptions of a group, then its causes and contexts, each once."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)


def lost_connection(exc: BaseException) -> LostConnection | None:
    """The lost connection behind ``exc`` (itself, in a group, or a cause), if any (pure)."""
    for candidate in _chain(exc):
        found = _classify(candidate)
        if found is not None:
            return found
    return None


def error_line(exc: BaseException) -> str | None:
    """The one-line message for a failure the CLI reports itself, or None for a bug (pure)."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        setting = "BV_" + "__".join(str(part).upper() for part in first["loc"])
        return f"invalid setting {setting}: {first['msg']} (got {first.get('input')!r})"
    if isinstance(exc, BitVelocityError):
        return str(exc)
    lost = lost_connection(exc)
    return lost.message() if lost is not None else None
