"""``bitvelocity bench``: run one of the benchmarks in ``bench/`` against the local stack."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from streams.console import out


class Scenario(StrEnum):
    SINK = "sink"
    ANALYTICS = "analytics"


def bench(
    scenario: Annotated[
        Scenario,
        typer.Option(
            help="What to measure: sink = the medallion sink (issue 14); analytics = hourly"
            " revenue + customer features (issue 6)."
        ),
    ] = Scenario.SINK,
    changes: Annotated[
        int, typer.Option(help="CDC records to generate (and sink, or run through the analytics).")
    ] = 20_000,
    summary_json: Annotated[
        Path | None, typer.Option("--json", help="Where to write the figures (JSON).")
    ] = None,
) -> None:
    """Measure against baselines taken in the same run; prints a table, writes JSON.

    Needs the stack (`bitvelocity stack up`). Builds and removes its own database,
    connector, topics and consumer groups; takes a few minutes.
    """
    if scenario is Scenario.ANALYTICS:
        from bench.analytics import RESULTS as ANALYTICS_RESULTS
        from bench.analytics import render as render_analytics
        from bench.analytics import run_analytics_bench

        path = summary_json or ANALYTICS_RESULTS
        out.print(render_analytics(run_analytics_bench(changes, json_path=path)))
        out.print(f"written {path}")
        return
    # Imported here: the benchmark pulls in the whole sink, which other commands do not need.
    from bench.sink import RESULTS, BenchOptions, render, run

    options = BenchOptions(changes=changes, json_path=summary_json or RESULTS)
    if scenario is Scenario.SINK:
        out.print(render(run(options)))
        out.print(f"written {options.json_path}")
