"""``bitvelocity bench``: run one of the benchmarks in ``bench/`` against the local stack."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from streams.console import out


class Scenario(StrEnum):
    SINK = "sink"
    SCALEOUT = "scaleout"


def bench(
    scenario: Annotated[
        Scenario,
        typer.Option(
            help="What to measure: sink = the medallion sink (issue 14); scaleout = telemetry "
            "into Cassandra and posts into MongoDB (needs `stack up --with-scaleout`)."
        ),
    ] = Scenario.SINK,
    changes: Annotated[int, typer.Option(help="CDC records to generate and sink.")] = 20_000,
    summary_json: Annotated[
        Path | None, typer.Option("--json", help="Where to write the figures (JSON).")
    ] = None,
) -> None:
    """Measure against baselines taken in the same run; prints a table, writes JSON.

    Needs the stack (`bitvelocity stack up`). Builds and removes its own database,
    connector, topics and consumer groups; takes a few minutes.
    """
    if scenario is Scenario.SCALEOUT:
        from bench import scaleout

        path = summary_json or scaleout.RESULTS
        out.print(scaleout.render(scaleout.run(changes, max(changes // 4, 1), path)))
        out.print(f"written {path}")
        return
    # Imported here: the benchmark pulls in the whole sink, which other commands do not need.
    from bench.sink import RESULTS, BenchOptions, render, run

    options = BenchOptions(changes=changes, json_path=summary_json or RESULTS)
    if scenario is Scenario.SINK:
        out.print(render(run(options)))
        out.print(f"written {options.json_path}")
