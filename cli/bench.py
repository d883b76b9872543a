"""``bitvelocity bench``: the benchmark harness (``bench/harness.py``) against the local stack."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from bench.disk_guard import require_free_space
from cli.console import out
from config.settings import load_settings

Scenario = Annotated[
    list[str] | None,
    typer.Option(
        help="Scenario to run (repeatable; default: all). The baselines always run. "
        "'sink-detail' is the older medallion-sink benchmark (batch sweep, metrics on/off); "
        "'analytics-detail' runs the analytics through the load generator and measures "
        "recovery from the state changelog; 'analytics-scale' runs one analytics worker on "
        "--events order events (default 1,000,000) for events/5 customers over 40 days: peak "
        "RSS, and seconds until it answers again with its state folder deleted, then a memory "
        "probe with as many customers as events; 'scaleout' measures telemetry into Cassandra and "
        "posts into MongoDB (needs `stack up --with-scaleout`)."
    ),
]
Events = Annotated[
    int | None,
    typer.Option(help="CDC records to preload (default 200000; sink-detail 20000)."),
]
Partitions = Annotated[int, typer.Option(help="Partitions per input topic.")]
SkipHeavy = Annotated[
    bool,
    typer.Option(help="Leave out the peers that install or restart something (Quix, JDBC)."),
]
LatencySeconds = Annotated[
    float, typer.Option(help="How long the latency-under-load scenario produces.")
]
MinFreeGb = Annotated[
    float,
    typer.Option(
        help="Refuse to start with less free space (GB) under the stack's state folder: a "
        "full run writes several GB of PostgreSQL WAL, all archived. 0 turns the check off."
    ),
]
SummaryJson = Annotated[
    Path | None, typer.Option("--json", help="Where to write the figures (JSON).")
]


def bench(
    scenario: Scenario = None,
    events: Events = None,
    partitions: Partitions = 3,
    skip_heavy: SkipHeavy = False,
    latency_seconds: LatencySeconds = 60.0,
    summary_json: SummaryJson = None,
    min_free_gb: MinFreeGb = 5.0,
) -> None:
    """Measure our pipeline against raw baselines and peers in one run; table + JSON.

    Needs the stack (`bitvelocity stack up`). Builds and removes its own topics, databases,
    consumer groups and connectors. The JDBC scenario restarts Kafka Connect once to load
    the plugin: do not run it on a stack others use.
    """
    require_free_space(load_settings().stack.state_dir, min_free_gb)
    detail = _DETAIL_RUNS.get(scenario[0]) if scenario and len(scenario) == 1 else None
    if detail is not None:
        detail(events, summary_json)
        return
    _run_harness(scenario, events, partitions, skip_heavy, latency_seconds, summary_json)


# The bench modules are imported inside each runner: they pull in the whole pipeline, which
# other commands do not need.


def _run_scaleout(events: int | None, summary_json: Path | None) -> None:
    """``--scenario scaleout`` alone: telemetry into Cassandra and posts into MongoDB."""
    from bench import scaleout

    changes = events or 20_000
    path = summary_json or scaleout.RESULTS
    scaleout.run_and_report(changes, max(changes // 4, 1), path, out.print)


def _run_analytics_detail(events: int | None, summary_json: Path | None) -> None:
    """``--scenario analytics-detail`` alone: the analytics and their changelog recovery."""
    from bench.analytics import RESULTS as ANALYTICS_RESULTS
    from bench.analytics import render as render_analytics
    from bench.analytics import run_analytics_bench

    path = summary_json or ANALYTICS_RESULTS
    out.print(render_analytics(run_analytics_bench(events or 20_000, json_path=path)))
    out.print(f"written {path}")


def _run_analytics_scale(events: int | None, summary_json: Path | None) -> None:
    """``--scenario analytics-scale`` alone: one analytics worker's memory and recovery."""
    from bench.analytics_scale import RESULTS, ScaleOptions, render, run_scale

    count = events or ScaleOptions.events
    options = ScaleOptions(
        events=count,
        customers=max(count // 5, 1),
        probe_customers=count,
        json_path=summary_json or RESULTS,
    )
    out.print(render(run_scale(options)))
    out.print(f"written {options.json_path}")


def _run_sink_detail(events: int | None, summary_json: Path | None) -> None:
    """``--scenario sink-detail`` alone: the older medallion-sink benchmark."""
    from bench.sink import RESULTS, BenchOptions, render, run

    options = BenchOptions(
        changes=events or BenchOptions.changes, json_path=summary_json or RESULTS
    )
    out.print(render(run(options)))
    out.print(f"written {options.json_path}")


#: Scenarios that, named alone, run their own benchmark instead of the harness.
_DETAIL_RUNS: dict[str, Callable[[int | None, Path | None], None]] = {
    "scaleout": _run_scaleout,
    "analytics-detail": _run_analytics_detail,
    "analytics-scale": _run_analytics_scale,
    "sink-detail": _run_sink_detail,
}


def _run_harness(
    scenario: list[str] | None,
    events: int | None,
    partitions: int,
    skip_heavy: bool,
    latency_seconds: float,
    summary_json: Path | None,
) -> None:
    """The harness: baselines, our pipeline and the peers, then the targets and the total."""
    from bench.harness import RESULTS as HARNESS_RESULTS
    from bench.harness import HarnessOptions, render_targets
    from bench.harness import render as render_harness
    from bench.harness import run as run_harness

    harness_options = HarnessOptions(
        events=events or HarnessOptions.events,
        partitions=partitions,
        scenarios=tuple(scenario or ()),
        skip_heavy=skip_heavy,
        latency_seconds=latency_seconds,
        json_path=summary_json or HARNESS_RESULTS,
    )
    result = run_harness(harness_options)
    out.print(render_harness(result))
    out.print(render_targets(result))
    out.print(f"{result['total_s']:.0f} s in all; written {harness_options.json_path}")
