"""Terminal output shared by the CLI commands: progress lines, tables, one-line errors."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, NoReturn, ParamSpec, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stack.manager import ServiceStatus

if TYPE_CHECKING:  # only for annotations: these modules import this one
    from demo.pipeline import DemoSummary
    from demo.smoke import SmokeChange

P = ParamSpec("P")
R = TypeVar("R")

# Wide enough for the status table when output goes to a file or CI log.
_WIDTH = None if sys.stdout.isatty() else 160
out = Console(highlight=False, width=_WIDTH)
err = Console(stderr=True, highlight=False, width=_WIDTH)


class ProgressLog:
    """Timestamped progress lines on stderr; repeated 'waiting' lines are throttled."""

    def __init__(self, quiet: bool = False) -> None:
        self.started = time.monotonic()
        self.quiet = quiet
        self._last_waiting = 0.0

    def __call__(self, message: str) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if message.startswith(
            (
                "waiting for",
                "kafka: downloaded",
                "debezium: downloaded",
                "registry: downloaded",
                "apicurio-converter: downloaded",
            )
        ):
            if now - self._last_waiting < 5:
                return
            self._last_waiting = now
        err.print(f"[dim]{now - self.started:6.1f}s[/dim] {message}")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def status_table(rows: list[ServiceStatus]) -> Table:
    """The ``stack status`` table."""
    table = Table(title="BitVelocity local stack")
    sized = any(row.state_bytes is not None for row in rows)
    columns = ("service", "state", "pid", "listening on", "detail", "state size")
    for column in columns if sized else columns[:-1]:
        table.add_column(column)
    colours = {"ready": "green", "starting": "yellow", "stopped": "red"}
    for row in rows:
        cells = [
            row.name,
            f"[{colours.get(row.state, 'white')}]{row.state}[/]",
            str(row.pid or "-"),
            row.addresses,
            row.detail or row.description,
        ]
        if sized:
            cells.append(f"{(row.state_bytes or 0) / 1e6:,.1f} MB")
        table.add_row(*cells)
    return table


def change_table(changes: list[SmokeChange]) -> Table:
    """Decoded change events, one row each."""
    table = Table(title="Change events read back from Kafka")
    for column in ("offset", "op", "key", "before", "after", "schema id"):
        table.add_column(column)
    for change in changes:
        table.add_row(
            str(change.offset),
            change.op,
            str(change.key),
            _row(change.before),
            _row(change.after),
            str(change.schema_id or "-"),
        )
    return table


def demo_table(summary: DemoSummary) -> Table:
    """Per table: what the workload wrote, what Kafka received, what each layer holds."""
    table = Table(title="Demo summary: OLTP -> Debezium -> Kafka -> bronze / silver")
    columns = (
        "table", "row changes", "CDC events", "OLTP rows", "soft-deleted",
        "bronze rows", "silver live", "silver hard-deleted", "",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "table" else "right")
    for row in summary.tables:
        ok = row.complete and row.silver_matches
        table.add_row(
            row.table,
            str(row.changes_written),
            f"{row.events_captured}/{row.events_expected}",
            str(row.rows_in_database),
            str(row.soft_deleted),
            str(row.bronze_rows),
            str(row.silver_live_rows),
            str(row.silver_hard_deleted),
            "[green]ok[/]" if ok else "[red]MISMATCH[/]",
        )
    return table


def _row(values: dict[str, object] | None) -> str:
    if values is None:
        return "-"
    return ", ".join(f"{k}={v}" for k, v in values.items() if k != "updated_at")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one readable error line and exit."""
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)
