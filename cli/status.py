"""``bitvelocity status``: one screen of pipeline health, read from the workers' /metrics."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

import asyncpg
import typer
from rich.table import Table

from cli.console import err, out
from config.errors import ConfigurationError, TransientError
from config.settings import Settings, load_settings
from observability.health import measure
from sinks.postgres.connection import DB_ERRORS, run_with_connection
from sinks.postgres.schema_changes import paused_tables


def status(
    targets: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            help="host:port of a worker's /metrics (default: BV_WEB__METRICS_PORT and "
            "BV_MONITORING__EXTRA_TARGETS).",
        ),
    ] = None,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between the two scrapes (for rates).")
    ] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Lag, freshness, throughput and recent errors per pipeline, from the running workers."""
    settings = load_settings()
    web = settings.web
    wanted = targets or [f"{web.host}:{web.metrics_port}", *settings.monitoring.extra_targets]
    urls = [f"http://{target}/metrics" for target in dict.fromkeys(wanted)]
    measured = measure(urls, web.token, interval)
    for skipped in measured.skipped:
        err.print(f"[yellow]skipped[/] {skipped}")
    report, late = measured.report, measured.late_events
    paused = _paused(settings)
    if as_json:
        document = {"workers": measured.workers, **asdict(report), "late_events_total": late}
        out.print_json(json.dumps(document | {"paused_tables": paused}, default=str))
        return
    slo = settings.monitoring.freshness_slo_s
    table = Table(title=f"Pipelines ({len(measured.workers)} worker(s), rates over {interval:g} s)")
    for column in ("pipeline", "records/s", "records", "lag", "freshness", "recent errors"):
        table.add_column(column)
    for p in report.pipelines:
        if p.freshness_s is None:
            fresh = "-"
        else:
            colour = "green" if p.freshness_s <= slo else "red"
            fresh = f"[{colour}]{p.freshness_s:.1f} s[/]"
        errors = ", ".join(f"{k}: {v:g}" for k, v in sorted(p.recent_errors.items()))
        behind = "-" if p.lag_records is None else f"{p.lag_records:,.0f}"
        table.add_row(
            p.pipeline, f"{p.records_per_s:,.0f}", f"{p.records_total:,.0f}", behind, fresh,
            f"[red]{errors}[/]" if errors else "none",
        )  # fmt: skip
    out.print(table)
    lag = Table(title="Consumer lag and dead letters by topic")
    for column in ("topic", "lag (records)", "DLQ records"):
        lag.add_column(column)
    for topic in sorted(set(report.lag_by_topic) | set(report.dlq_by_topic)):
        lag.add_row(
            topic,
            f"{report.lag_by_topic.get(topic, 0):,.0f}",
            f"{report.dlq_by_topic.get(topic, 0):,.0f}",
        )
    out.print(lag)
    out.print(f"late events (changes beyond window retention, on late-events): {late:,.0f}")
    if paused is not None:
        _print_paused(paused)


def _paused(settings: Settings) -> list[dict[str, Any]] | None:
    """Tables paused by a schema change, from ``ops.schema_changes`` (None: no database)."""
    try:
        return run_with_connection(settings.postgres, None, paused_tables)
    except (*DB_ERRORS, asyncpg.PostgresError, TransientError, ConfigurationError) as exc:
        err.print(f"[yellow]paused tables unknown[/] (warehouse unreachable: {exc})")
        return None


def _print_paused(paused: list[dict[str, Any]]) -> None:
    """Which tables a source schema change paused, since when and why (decision 0021)."""
    if not paused:
        out.print("tables paused by a source schema change: none")
        return
    grid = Table(title="[red]Paused by a source schema change[/] (`bitvelocity schema accept`)")
    for column in ("table", "schema id", "since (UTC)", "first record not written", "why"):
        grid.add_column(column)
    for row in paused:
        grid.add_row(
            row["table_name"],
            str(row["schema_id"]),
            row["since"].strftime("%Y-%m-%d %H:%M:%S"),
            f"{row['source_topic']}[{row['source_partition']}] {row['source_offset']}",
            row["reason"],
        )
    out.print(grid)
