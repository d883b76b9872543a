"""``bitvelocity quality rules | report | add-rule``: see, measure and add data-quality rules."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, TypeVar

import asyncpg
import typer
from rich.table import Table

from cli.console import out
from config.errors import PermanentError
from config.settings import load_settings
from quality.rules import InvalidRuleError, Rule, RuleType, Severity
from sinks.postgres.connection import run_with_connection
from sinks.postgres.quality.admin import RuleReport, add_rule, list_rules, rule_report

T = TypeVar("T")


class InvalidDurationError(PermanentError):
    """A duration option could not be read."""


quality_app = typer.Typer(
    help="Data-quality rules on silver tables: list them, add one, report how they fare.",
    no_args_is_help=True,
)

Database = Annotated[
    str | None, typer.Option(help="Warehouse database (default: BV_POSTGRES__DATABASE).")
]
_DURATION = re.compile(r"(?:(\d+)\s*([smhdw])\s*)+")
_PART = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``1h``, ``2d``, ``1h30m`` -> timedelta."""
    if not _DURATION.fullmatch(text.strip().lower()):
        raise InvalidDurationError(f"--since {text!r} is not a duration like 30m, 1h, 2d or 1h30m")
    total = timedelta()
    for amount, unit in _PART.findall(text.lower()):
        total += timedelta(**{_UNITS[unit]: int(amount)})
    return total


def _run(database: str | None, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    return run_with_connection(load_settings().postgres, database, work)


@quality_app.command("rules")
def rules_command(database: Database = None) -> None:
    """List every rule with its config, severity and whether it is active."""
    invalid: list[InvalidRuleError] = []
    rules = _run(database, lambda connection: list_rules(connection, invalid))
    out.print(rules_table(rules))
    for error in invalid:
        out.print(f"[yellow]skipped by workers:[/] {error}")


@quality_app.command("report")
def report_command(
    since: Annotated[str, typer.Option(help="How far back to look: 30m, 1h, 2d, 1h30m.")] = "1h",
    database: Database = None,
) -> None:
    """Per rule over the period: checks, failures, success rate and the latest samples."""
    period = parse_duration(since)
    reports = _run(database, lambda connection: rule_report(connection, period))
    out.print(report_table(reports, since))


@quality_app.command("add-rule")
def add_rule_command(
    table: Annotated[str, typer.Option(help="Silver table, e.g. orders.")],
    column: Annotated[str, typer.Option(help="Column of that table, e.g. total_amount.")],
    rule_type: Annotated[str, typer.Option("--type", help=f"One of {', '.join(RuleType)}.")],
    config: Annotated[
        str,
        typer.Option(
            help='JSON: {} for NOT_NULL, {"min": 0, "max": 10} for RANGE, '
            '{"regex": "^[A-Z]{3}$"} for PATTERN, '
            '{"table": "customers", "column": "customer_id"} for REFERENCE.'
        ),
    ] = "{}",
    severity: Annotated[str, typer.Option(help=f"One of {', '.join(Severity)}.")] = "ERROR",
    inactive: Annotated[bool, typer.Option(help="Add it switched off.")] = False,
    database: Database = None,
) -> None:
    """Add a rule without SQL; it is validated first and takes effect in running workers."""
    rule = _run(
        database,
        lambda connection: add_rule(
            connection,
            table=table,
            column=column,
            rule_type=rule_type,
            config=config,
            severity=severity,
            active=not inactive,
        ),
    )
    out.print(
        f"added rule {rule.rule_id}: {rule.severity} {rule.rule_type} on "
        f"{rule.table_name}.{rule.column_name} {json.dumps(dict(rule.config))}"
    )


def rules_table(rules: list[Rule]) -> Table:
    table = Table(title="Data-quality rules")
    for column in ("id", "table", "column", "type", "config", "severity", "active"):
        table.add_column(column, justify="right" if column == "id" else "left")
    for rule in rules:
        table.add_row(
            str(rule.rule_id),
            rule.table_name,
            rule.column_name,
            str(rule.rule_type),
            json.dumps(dict(rule.config)),
            str(rule.severity),
            "yes" if rule.is_active else "no",
        )
    return table


def report_table(reports: list[RuleReport], since: str) -> Table:
    table = Table(title=f"Data quality over the last {since}")
    for column in ("id", "rule", "checks", "failures", "success", "pending", "latest samples"):
        table.add_column(
            column, justify="left" if column in ("rule", "latest samples") else "right"
        )
    for report in reports:
        rule = report.rule
        table.add_row(
            str(rule.rule_id),
            f"{rule.severity} {rule.rule_type} {rule.table_name}.{rule.column_name}",
            str(report.checks),
            str(report.failures),
            "-" if report.success_rate is None else f"{report.success_rate:.2%}",
            str(report.pending),
            "\n".join(json.dumps(sample) for sample in report.latest_samples) or "-",
        )
    return table
