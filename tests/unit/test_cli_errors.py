"""The root group's error handling: lost connections become one `error:` line and exit 2.

Pure: each case raises a real driver exception class inside a tiny Typer app built on the
same root group, and reads what the command printed; no server is contacted.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

import asyncpg
import httpx
import pytest
import redis.exceptions
import typer
from confluent_kafka import KafkaError, KafkaException
from typer.testing import CliRunner

from cli.errors import error_line, lost_connection
from cli.help_text import reflow
from cli.root import BitVelocityGroup
from config.errors import TransientError
from oltp.loadgen import ensure_open


def _run(raiser: Callable[[], None]) -> tuple[int, str]:
    app = typer.Typer(cls=BitVelocityGroup, pretty_exceptions_enable=False)

    @app.command("boom")
    def boom() -> None:
        """Raise."""
        raiser()

    @app.command("other")
    def other() -> None:
        """A second command, so `boom` is a subcommand of the root group."""

    result = CliRunner().invoke(app, ["boom"])
    return result.exit_code, result.stderr


def _raise(exc: BaseException) -> Callable[[], None]:
    def raiser() -> None:
        raise exc

    return raiser


def _lost_mid_query() -> None:
    # How `bitvelocity loadgen` failed when PostgreSQL stopped: the server's shutdown
    # notice, then asyncpg's broken protocol state raised while handling it.
    try:
        raise asyncpg.exceptions.AdminShutdownError("terminating connection")
    except asyncpg.exceptions.AdminShutdownError:
        raise asyncpg.exceptions.InternalClientError("cannot switch to state 15") from None


def _request_error() -> None:
    request = httpx.Request("GET", _CONNECT_URL)
    raise httpx.ConnectError("All connection attempts failed", request=request)


_PG, _KAFKA, _REDIS = "BV_POSTGRES__PORT", "BV_KAFKA__BOOTSTRAP_SERVERS", "BV_REDIS__PORT"
_CONNECT_URL = "http://127.0.0.1:1/connectors"
_CLOSED = asyncpg.exceptions.ConnectionDoesNotExistError("closed")
_TRANSPORT = KafkaException(KafkaError(KafkaError._TRANSPORT))
_REFUSED = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
_BARE = OSError("Multiple exceptions: [Errno 111] Connect call failed")


@pytest.mark.parametrize(
    ("raiser", "service", "setting"),
    [
        pytest.param(_lost_mid_query, "PostgreSQL", _PG, id="asyncpg-state-15"),
        pytest.param(_raise(_CLOSED), "PostgreSQL", _PG, id="asyncpg-closed"),
        pytest.param(_raise(_TRANSPORT), "Kafka", _KAFKA, id="kafka-transport"),
        pytest.param(_raise(redis.exceptions.ConnectionError("no")), "Redis", _REDIS, id="redis"),
        pytest.param(_request_error, _CONNECT_URL, "BV_CONNECT__URL", id="httpx"),
        pytest.param(_raise(_REFUSED), "a service", "BV_*__PORT", id="refused"),
        pytest.param(_raise(_BARE), "a service", "BV_*__PORT", id="bare-oserror"),
    ],
)
def test_a_lost_connection_ends_as_one_error_line_and_exit_2(
    raiser: Callable[[], None], service: str, setting: str
) -> None:
    code, stderr = _run(raiser)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error: lost the connection to {service} (")
    assert setting in lines[0]
    assert "Traceback" not in stderr


def test_the_cause_is_named_in_the_line() -> None:
    _, stderr = _run(_lost_mid_query)
    assert "InternalClientError: cannot switch to state 15" in stderr


def test_our_own_errors_keep_their_message() -> None:
    code, stderr = _run(_raise(TransientError("registry at http://x unreachable")))
    assert (code, stderr.strip()) == (2, "error: registry at http://x unreachable")


def test_a_connection_error_in_a_group_or_as_cause_is_found() -> None:
    refused = ConnectionRefusedError("refused")
    group = ExceptionGroup("tasks", [ValueError("other"), refused])
    wrapped = RuntimeError("wrapper")
    wrapped.__cause__ = redis.exceptions.ConnectionError("down")
    assert lost_connection(group) is not None
    found = lost_connection(wrapped)
    assert found is not None
    assert found.service == "Redis"


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("a bug"),
        FileNotFoundError(errno.ENOENT, "no such file"),
        BrokenPipeError(errno.EPIPE, "our stdout closed"),
        KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)),
    ],
    ids=["bug", "missing-file", "broken-stdout", "kafka-not-transport"],
)
def test_other_failures_are_not_reported_as_lost_connections(exc: BaseException) -> None:
    assert error_line(exc) is None


def test_a_bug_keeps_its_traceback() -> None:
    result = CliRunner().invoke(_bug_app(), ["boom"])
    assert isinstance(result.exception, ValueError)


def _bug_app() -> typer.Typer:
    app = typer.Typer(cls=BitVelocityGroup, pretty_exceptions_enable=False)
    app.command("boom")(_raise(ValueError("a bug")))
    app.command("other")(lambda: None)
    return app


def test_reflow_joins_the_lines_of_a_paragraph_and_keeps_lists() -> None:
    text = """First line.

    Start several workers with the same settings; each commits its
    batches in one transaction.

    Steps:
    - stop the worker,
      then wait
    1. one
    2. two
    """
    assert reflow(text) == (
        "First line.\n\n"
        "Start several workers with the same settings; each commits its batches in one "
        "transaction.\n\n"
        "Steps:\n- stop the worker,\n  then wait\n1. one\n2. two"
    )


def test_reflow_leaves_a_no_rewrap_block_alone() -> None:
    text = "Title.\n\n\b\nkeep  this\nas is"
    assert reflow(text) == text


def test_a_connection_the_server_closed_while_idle_is_a_lost_connection() -> None:
    """The CI run found loadgen ending with a traceback of asyncpg's bare InterfaceError
    ("connection is closed") when PostgreSQL stopped between two transactions."""

    class ClosedConnection:
        def is_closed(self) -> bool:
            return True

    with pytest.raises(asyncpg.ConnectionDoesNotExistError) as raised:
        ensure_open(ClosedConnection())  # type: ignore[arg-type]  # the one method it calls
    line = error_line(raised.value)
    assert line is not None
    assert line.startswith("lost the connection to PostgreSQL (")
