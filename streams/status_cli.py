"""``bitvelocity status``: one screen of pipeline health, read from the workers' /metrics."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Annotated, Any

import asyncpg
import typer
from pydantic import SecretStr
from rich.table import Table

from config.errors import ConfigurationError, TransientError
from config.settings import Settings, load_settings
from observability.health import Samples, WorkerUnreachableError, merge, scrape, summarize
from sinks.postgres.connection import DB_ERRORS, run_with_connection
from sinks.postgres.schema_changes import paused_tables
from streams.console import err, guarded, out


@guarded
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
    first = _scrape_all(urls, web.token)
    if not first:
        raise TransientError(
            f"no worker answered at {', '.join(urls)}; is a worker running "
            "(`bitvelocity worker`)? Use --target host:port for others"
        )
    started = time.monotonic()
    time.sleep(interval)
    second = _scrape_all(list(first), web.token)
    latest = merge(list(second.values()))
    report = summarize(merge(list(first.values())), latest, time.monotonic() - started)
    late = late_events_total(latest)
    paused = _paused(settings)
    if as_json:
        document = {"workers": list(second), **asdict(report), "late_events_total": late}
        out.print_json(json.dumps(document | {"paused_tables": paused}, default=str))
        return
    slo = settings.monitoring.freshness_slo_s
    table = Table(title=f"Pipelines ({len(second)} worker(s), rates over {interval:g} s)")
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
    if paused is None:
        return
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


def _paused(settings: Settings) -> list[dict[str, Any]] | None:
    """Tables paused by a schema change, from ``ops.schema_changes`` (None: no database)."""
    try:
        return run_with_connection(settings.postgres, None, paused_tables)
    except (*DB_ERRORS, asyncpg.PostgresError, TransientError, ConfigurationError) as exc:
        err.print(f"[yellow]paused tables unknown[/] (warehouse unreachable: {exc})")
        return None


def late_events_total(samples: Samples) -> float:
    """``bv_late_events_total`` summed over the workers (published, republished included)."""
    return sum(v for (name, _), v in samples.items() if name == "bv_late_events_total")


def _scrape_all(urls: list[str], token: SecretStr | None) -> dict[str, Samples]:
    found = {}
    for url in urls:
        try:
            found[url] = scrape(url, token=token)
        except WorkerUnreachableError as exc:
            err.print(f"[yellow]skipped[/] {exc}")
    return found
