"""``bitvelocity demo``: the end-to-end demo with its checked summary."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from cli.console import ProgressLog, demo_table, fail, out, status_table
from cli.demo_report import analytics_problems, demo_failure, print_analytics, print_demo_checks
from cli.scaleout import scaleout_demo_section
from cli.stack import WithScaleout
from config.settings import Settings, load_settings
from demo.checks import check_analytics
from demo.pipeline import DemoSummary, run_demo
from oltp.loadgen import LoadgenConfig
from stack.manager import Stack

Transactions = Annotated[int, typer.Option(help="Business transactions to generate.")]
Rate = Annotated[float, typer.Option(help="Transactions per second.")]
Seed = Annotated[int, typer.Option(help="Load generator seed.")]
Timeout = Annotated[float, typer.Option(help="Seconds to wait for the capture.")]
SummaryJson = Annotated[
    Path | None, typer.Option("--json", help="Also write the summary to this JSON file.")
]
CheckOnly = Annotated[
    bool,
    typer.Option(
        "--check-only",
        help="Only judge what gold and the Redis feature store hold now against SQL over "
        "the OLTP tables (no stack start, load or agents); exit 1 on any difference.",
    ),
]


def demo(
    transactions: Transactions = 400,
    rate: Rate = 200.0,
    seed: Seed = 42,
    timeout: Timeout = 120.0,
    summary_json: SummaryJson = None,
    with_scaleout: WithScaleout = False,
    check_only: CheckOnly = False,
) -> None:
    """The end-to-end demo: stack, OLTP schema, Debezium, a seeded workload, a checked summary.

    With --with-scaleout it also starts Cassandra and FerretDB and checks chat, telemetry
    and posts events through the store agents (`bitvelocity scaleout`).

    Starts what is missing, migrates, registers the connector, runs the load generator for a
    bounded time, waits until every change reached Kafka, runs every agent until caught up,
    and prints per table what was written, captured and stored, then the hourly revenue,
    customer features and Redis feature store checked against SQL, a cache round and the web
    views. Exits 1 on any difference. The stack keeps running afterwards (`bitvelocity stack
    down` stops it).
    """
    if check_only:
        _check_now()
        return
    progress = ProgressLog()
    stack = Stack.from_environment(create_credentials=True, with_scaleout=with_scaleout)
    out.print(status_table(stack.up(progress)))
    # Orders within 30 days: every one lands in an hourly window inside the analytics'
    # retention (35 days), so the whole load is compared against gold.
    config = LoadgenConfig(seed=seed, transactions=transactions, rate=rate, days_back=30)
    summary = run_demo(stack.settings, config, progress, timeout_s=timeout)
    out.print(demo_table(summary))
    document = summary.as_dict()
    if with_scaleout:
        scaleout = scaleout_demo_section(stack.settings, seed, progress, timeout)
        document["scaleout"] = scaleout.as_dict()
    if summary_json is not None:
        summary_json.write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")
    _print_summary(summary)
    _fail_unless_ok(summary)
    _print_success(summary, progress, stack.settings)


def _check_now() -> None:
    """``--check-only``: judge gold and the feature store as they are; exit 1 on a difference."""
    check = asyncio.run(check_analytics(load_settings(), datetime.now(UTC)))
    print_analytics(check)
    if not check.ok:
        fail("demo checks failed: " + "; ".join(analytics_problems(check)), code=1)
    out.print("[green]checks ok[/]: gold and the Redis feature store equal SQL")


def _print_summary(summary: DemoSummary) -> None:
    """The sink's figures and the demo's checks, before any verdict."""
    out.print(
        f"gold: {summary.gold_current_facts} current order facts; "
        f"{summary.sink_batches} sink batches in {summary.sink_seconds:.1f} s; "
        f"dead letters so far: {summary.dead_letters}; quality failures so far: "
        f"{summary.quality_failures} (`bitvelocity quality report`)"
    )
    print_demo_checks(summary)


def _fail_unless_ok(summary: DemoSummary) -> None:
    """Exit 1 naming what differs: missing change events first, as they explain the rest."""
    if not summary.captured_ok:
        missing = [t.table for t in summary.tables if not (t.complete and t.silver_matches)]
        fail(
            f"change events missing on Kafka for: {', '.join(missing)} "
            f"(see `bitvelocity connector status` and `bitvelocity stack logs connect`)",
            code=1,
        )
    if not summary.ok:
        fail(demo_failure(summary), code=1)


def _print_success(summary: DemoSummary, progress: ProgressLog, settings: Settings) -> None:
    """The closing line: what was proven, and what to try next on the running stack."""
    out.print(
        f"[green]demo ok[/]: {summary.transactions} transactions, every row change captured "
        f"once and landed in bronze and silver; gold hourly revenue, customer features and "
        f"the Redis feature store equal SQL over the OLTP tables; a price change evicted the "
        f"cache; in {progress.elapsed:.0f} s. Next: `bitvelocity worker` (web views on "
        f"{settings.web.host}:{settings.web.port}, /metrics and /dashboard on "
        f"{settings.web.host}:{settings.web.metrics_port}), "
        "`bitvelocity loadgen --rate 50 --duration 60`, `bitvelocity quality report`, "
        "`bitvelocity status`; the stack is "
        "still running (`bitvelocity stack down`)."
    )
