"""``bitvelocity``: the one command of the project, with a subcommand per job.

Every error this project raises on purpose, and every invalid setting, ends as one
readable line on stderr and a non-zero exit code, never a stack trace.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError

from config.errors import BitVelocityError
from config.settings import PROJECT_ROOT
from stack import process
from stack.manager import SERVICE_NAMES, Stack
from streams.console import ProgressLog, change_table, fail, out, status_table
from streams.dlq_cli import dlq_app
from streams.smoke import EXPECTED_OPS, SMOKE_WRITES, run_smoke

app = typer.Typer(
    name="bitvelocity",
    help=(
        "BitVelocity Streams: exactly-once CDC from PostgreSQL into a medallion warehouse, "
        "real-time features and coherent caches.\n\n"
        "Settings come from BV_* environment variables (see config/settings.py); "
        "`bitvelocity stack up` runs every service locally, on loopback, without Docker."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(
    help="Run the local services: Kafka, Connect+Debezium, registry, PostgreSQL, Redis.",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")
app.add_typer(dlq_app, name="dlq")

T = TypeVar("T")
ServiceNames = Annotated[
    list[str] | None,
    typer.Argument(help=f"Services to act on (default: all of {', '.join(SERVICE_NAMES)})."),
]


def _guarded(action: Callable[[], T]) -> T:
    """Run ``action``; our errors and bad settings become one line and exit code 2."""
    try:
        return action()
    except ValidationError as exc:
        first = exc.errors()[0]
        setting = "BV_" + "__".join(str(part).upper() for part in first["loc"])
        fail(f"invalid setting {setting}: {first['msg']} (got {first.get('input')!r})")
    except BitVelocityError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    raise AssertionError("unreachable")  # fail() exits


@stack_app.command("up")
def stack_up(
    services: ServiceNames = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only print the table.")] = False,
) -> None:
    """Start the stack (idempotent): download on first use, then wait until all are ready."""

    def run() -> None:
        progress = ProgressLog(quiet)
        stack = Stack.from_environment(create_credentials=True)
        rows = stack.up(progress, services)
        out.print(status_table(rows))
        out.print(
            f"stack ready in {progress.elapsed:.1f} s (state in {stack.settings.stack.state_dir})"
        )

    _guarded(run)


@stack_app.command("down")
def stack_down(services: ServiceNames = None) -> None:
    """Stop the services this stack started (found by pid file); leaves data in place."""

    def run() -> None:
        stopped = Stack.from_environment().down(ProgressLog(), services)
        out.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")

    _guarded(run)


@stack_app.command("status")
def stack_status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show each service: ready, starting or stopped, with pid, ports and version."""

    def run() -> None:
        rows = Stack.from_environment().status()
        if as_json:
            out.print_json(json.dumps([row.__dict__ for row in rows]))
        else:
            out.print(status_table(rows))
        if not all(row.ready for row in rows):
            raise typer.Exit(1)

    _guarded(run)


@stack_app.command("logs")
def stack_logs(
    service: Annotated[str, typer.Argument(help=f"One of {', '.join(SERVICE_NAMES)}.")],
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many lines.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing.")] = False,
) -> None:
    """Print the end of a service's log file."""

    def run() -> None:
        path = Stack.from_environment().service(service).log_path
        out.print(f"[dim]{path}[/dim]")
        print(process.tail(path, lines))
        if follow:
            _follow(path)

    _guarded(run)


def _follow(path: Path) -> None:
    with path.open("r", errors="replace") as handle:
        handle.seek(0, 2)
        while True:
            line = handle.readline()
            if line:
                print(line, end="")
            else:
                time.sleep(0.5)


@app.command("demo")
def demo(
    converter: Annotated[
        str, typer.Option(help="Value format Debezium writes: avro (via the registry) or json.")
    ] = "avro",
) -> None:
    """End-to-end demo: start the stack, change rows in PostgreSQL, show the decoded CDC events.

    Runs the smoke pipeline (PostgreSQL -> Debezium -> Kafka -> registry -> decoded events).
    The stack keeps running afterwards; stop it with `bitvelocity stack down`.
    """
    if converter not in ("avro", "json"):
        fail(f"--converter must be avro or json, not {converter!r}")

    def run() -> None:
        progress = ProgressLog()
        stack = Stack.from_environment(create_credentials=True)
        out.print(status_table(stack.up(progress)))
        changes = run_smoke(stack.settings, progress, converter=converter)  # type: ignore[arg-type]
        out.print(change_table(changes))
        expected = len(SMOKE_WRITES)
        received = tuple(change.op for change in changes)
        if received != EXPECTED_OPS:
            fail(f"expected change events {EXPECTED_OPS}, received {received}", code=1)
        out.print(
            f"[green]demo ok[/]: {expected} row changes captured, decoded and checked in "
            f"{progress.elapsed:.1f} s. The stack is still running: `bitvelocity stack status`, "
            "`bitvelocity stack down`."
        )

    _guarded(run)


@app.command("test")
def run_tests(
    pytest_args: Annotated[
        list[str] | None, typer.Argument(help="Extra arguments for pytest (after --).")
    ] = None,
    keep_stack: Annotated[
        bool, typer.Option(help="Leave the services it started running afterwards.")
    ] = False,
) -> None:
    """Run the whole test suite against the real local stack (started, then stopped)."""

    def run() -> int:
        progress = ProgressLog()
        stack = Stack.from_environment(create_credentials=True)
        already = {row.name for row in stack.status() if row.pid is not None}
        out.print(status_table(stack.up(progress)))
        try:
            command = [sys.executable, "-m", "pytest", *(pytest_args or [])]
            progress(f"running {' '.join(command[2:])}")
            # Our own interpreter and pytest; the extra arguments are the caller's own.
            code = subprocess.call(command, cwd=PROJECT_ROOT)  # noqa: S603
        finally:
            started = [s for s in SERVICE_NAMES if s not in already]
            if started and not keep_stack:
                stack.down(progress, started)
        if code == 5:
            fail("pytest collected no tests: a suite that runs nothing is a failure", code=5)
        return code

    raise typer.Exit(_guarded(run))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
