"""One benchmark run: our pipeline against raw baselines and peers, on the same input.

``run(options)`` preloads CDC-shaped input (``bench.cdc_events``) into fresh topics, then
runs the selected scenarios in registry order on that same data and returns one result:
every row with its figures and its ratio to B0 (the raw consumer over the same records,
measured in this run), plus the machine's facts. ``render`` makes the rich table.

A scenario is a small registry entry (``@scenario(name, summary)`` on an async function
taking the ``BenchContext`` and returning ``Row``s); ``bench/scenarios.py`` holds ours and
``bench/peers/`` the peers. A new module plugs in by importing ``scenario`` and being
listed in ``SCENARIO_MODULES``. Nothing here asserts a figure: the machine is shared, the
ratios are what to read (``bench/README.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import json
import logging
import multiprocessing
import platform
import secrets
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import confluent_kafka
import fastavro
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.table import Table

from bench.cdc_events import CUSTOMERS, TABLES, CdcInput, describe, preload
from bench.pipeline_env import BENCH_NAMES, delete_consumer_groups, derive
from bench.sink import CapturedRecord, Warehouses
from config.errors import RegistryError
from config.settings import Settings, load_settings
from oltp.schema import migrate_oltp
from serdes.registry import RegistryClient
from sinks.postgres.connection import connect
from stack.versions import DEBEZIUM_VERSION, KAFKA_VERSION
from streams.memory import garbage_collector_of_a_worker

log = logging.getLogger("bitvelocity.bench")
RESULTS = Path(__file__).resolve().parent / "results" / "bench.json"
#: Modules whose import registers scenarios, in run order (the baselines always run first).
SCENARIO_MODULES = (
    "bench.scenarios",
    "bench.sink_workers",
    "bench.peers.quix",
    "bench.peers.jdbc_sink",
    "bench.peers.naive_faust",
    "bench.latency",
)
console = Console(width=160)


@dataclass(frozen=True)
class HarnessOptions:
    events: int = 200_000
    partitions: int = 3
    scenarios: tuple[str, ...] = ()  # empty: all registered
    skip_heavy: bool = False  # leave out the scenarios that install or restart something
    batch_max_records: int = 5_000
    peer_timeout_s: float = 120.0  # a peer that is slower reports what it did by then
    anchor_budget_s: float = 20.0  # the naive anchor runs this long, not to the end
    #: Debezium's JDBC sink 3.6.1.Final is not on Maven Central (newest: 3.6.0.Final); the
    #: JDBC row then runs this version and says so. None: report the row as unavailable.
    jdbc_fallback_version: str | None = "3.6.0.Final"
    latency_fraction: float = 0.5
    latency_seconds: float = 60.0
    phase_timeout_s: float = 300.0
    json_path: Path = RESULTS


@dataclass
class Row:
    """One measured line: a rate and what else the scenario knows about it."""

    key: str
    label: str
    rate: float | None  # per second; None when the row failed or was skipped
    unit: str = "records/s"
    records: int = 0
    seconds: float | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"  # ok | partial (stopped at a time limit) | failed | unavailable
    note: str = ""

    def as_json(self, b0: float | None) -> dict[str, Any]:
        ratio = None if not self.rate or not b0 else round(self.rate / b0, 4)
        return {
            "key": self.key,
            "label": self.label,
            "rate": None if self.rate is None else round(self.rate, 1),
            "unit": self.unit,
            "ratio_to_b0": ratio,
            "records": self.records,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "status": self.status,
            "note": self.note,
            **self.figures,
        }


@dataclass
class BenchContext:
    """What every scenario gets: settings of this run, the input, the rows so far."""

    settings: Settings
    options: HarnessOptions
    run_id: str
    cdc: CdcInput
    records: list[CapturedRecord]
    warehouses: Warehouses
    rows: dict[str, Row] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    cleanups: list[Callable[[], object]] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka.bootstrap_servers

    @property
    def topics(self) -> list[str]:
        return [self.cdc.topics[t] for t in TABLES]

    @property
    def data_records(self) -> int:
        return self.cdc.total

    def group(self, label: str) -> str:
        """A consumer group of this run (deleted at the end)."""
        name = f"{self.settings.kafka.consumer_group}-{label}"
        self.groups.append(name)
        return name

    def rate_of(self, key: str) -> float | None:
        row = self.rows.get(key)
        return None if row is None else row.rate

    async def fresh_warehouse(self, label: str) -> str:
        """A migrated warehouse database of this run, with the workload's customers in silver
        (the orders' REFERENCE rule then passes, as it does in production)."""
        name = await self.warehouses.fresh(label)
        connection = await connect(self.settings.postgres, name)
        try:
            await connection.execute(
                "INSERT INTO silver.customers (customer_id, email, source_lsn, source_partition,"
                " source_offset, source_committed_at, data_quality_score, quality_checks_passed,"
                " quality_issues, source_bronze_id, processing_version) SELECT g, 'c' || g ||"
                " '@bench.example', 0, 0, 0, now(), 1, '{}', '{}', gen_random_uuid(), 1"
                " FROM generate_series(1, $1::int) AS g",
                CUSTOMERS,
            )
        finally:
            await connection.close()
        return name


ScenarioFunction = Callable[[BenchContext], Coroutine[Any, Any, list[Row]]]


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    run: ScenarioFunction
    heavy: bool = False  # installs something or restarts a service


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str, summary: str, *, heavy: bool = False
) -> Callable[[ScenarioFunction], ScenarioFunction]:
    """Register ``function`` as the scenario ``name`` (registration order is run order)."""

    def register(function: ScenarioFunction) -> ScenarioFunction:
        SCENARIOS[name] = Scenario(name, summary, function, heavy)
        return function

    return register


def load_scenarios() -> dict[str, Scenario]:
    for module in SCENARIO_MODULES:
        importlib.import_module(module)
    return SCENARIOS


def selected(options: HarnessOptions) -> list[Scenario]:
    registry = load_scenarios()
    unknown = set(options.scenarios) - set(registry)
    if unknown:
        raise ValueError(f"unknown scenario(s) {sorted(unknown)}; choose from {sorted(registry)}")
    wanted = ["baselines", *options.scenarios] if options.scenarios else list(registry)
    return [
        s for name, s in registry.items() if name in wanted and not (options.skip_heavy and s.heavy)
    ]


# -- the run ----------------------------------------------------------------------------------
def run(options: HarnessOptions, settings: Settings | None = None) -> dict[str, Any]:
    """Preload, run the scenarios, clean up; returns the result (also written as JSON)."""
    base = settings or load_settings()
    # The garbage collector as `bitvelocity worker` sets it, for the baselines as much as
    # for our rows: the ratios compare like with like. Restored afterwards (tests run this).
    with garbage_collector_of_a_worker(base.worker.gc_gen0_threshold):
        return _run(options, base)


def _run(options: HarnessOptions, base: Settings) -> dict[str, Any]:
    scenarios = selected(options)
    run_id = secrets.token_hex(3)
    derived = derive(base, run_id, options.batch_max_records, BENCH_NAMES)
    topics = {t: derived.topics.cdc_topic(t) for t in TABLES}
    started = time.monotonic()
    with _cleanup(derived, topics) as state:
        console.log(f"preloading {options.events:,} CDC records, {options.partitions} partitions")
        with RegistryClient(derived.registry) as registry:
            cdc = preload(
                derived.kafka.bootstrap_servers,
                registry,
                topics,
                records=options.events,
                partitions=options.partitions,
            )
        preload_s = time.monotonic() - started
        # The input records are the harness's, not a sink's: out of every collection. The
        # sink row ran 15-20 % slower while every full collection scanned them too
        # (docs/decisions/0022, "stop 35").
        gc.freeze()
        context = BenchContext(derived, options, run_id, cdc, cdc.records, Warehouses(derived))
        state.append(context)
        # The sink and the agents log in as the worker role, whose password the OLTP
        # migration sets (as `bitvelocity migrate` does); its database is dropped at the end.
        context.warehouses.created.append(derived.postgres.database)
        asyncio.run(migrate_oltp(derived))
        for entry in scenarios:
            console.log(f"scenario {entry.name}: {entry.summary}")
            phase = time.monotonic()
            try:
                rows = asyncio.run(entry.run(context))
            except Exception as exc:
                log.exception("scenario %s failed", entry.name)
                rows = [Row(entry.name, entry.summary, None, status="failed", note=_one_line(exc))]
            load = _load_average()
            for row in rows:
                row.figures.setdefault("scenario", entry.name)
                row.figures.setdefault("scenario_s", round(time.monotonic() - phase, 1))
                # The machine is shared: rows measured minutes apart ran under different load.
                row.figures.setdefault("load_average_1m", load[0] if load else None)
                context.rows[row.key] = row
                console.log(f"  {row.label}: {_rate_text(row)} {row.unit} {row.note}")
        result = report(context, preload_s, time.monotonic() - started)
    options.json_path.parent.mkdir(parents=True, exist_ok=True)
    options.json_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def delete_topics_named(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (no separator implied, unlike
    ``delete_topics_with_prefix``: outputs and peers' internal topics are named freely)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=15).values():
            future.result(timeout=30)
    return topics


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()
    return text[0][:300] if text else type(exc).__name__


@contextlib.contextmanager
def _cleanup(settings: Settings, topics: dict[str, str]) -> Iterator[list[BenchContext]]:
    """Whatever the run creates is removed afterwards, also when it fails."""
    holder: list[BenchContext] = []
    try:
        yield holder
    finally:
        bootstrap = settings.kafka.bootstrap_servers
        for context in holder:
            for cleanup in reversed(context.cleanups):
                try:
                    cleanup()
                except Exception:
                    log.exception("benchmark cleanup step failed")
            asyncio.run(context.warehouses.drop_all())
            delete_consumer_groups(bootstrap, context.groups)
        delete_topics_named(bootstrap, settings.topics.cdc_prefix)
        with RegistryClient(settings.registry) as registry:
            for topic in topics.values():
                for side in ("key", "value"):
                    with contextlib.suppress(RegistryError):
                        registry.delete_subject(f"{topic}-{side}")


# -- the report -------------------------------------------------------------------------------
TARGETS = {
    "sink_records_per_s": 20_000,
    # B0 (a raw consume) reads over a million records/s here: no decoding sink approaches
    # it. B3, decode plus COPY in one process, is the honest ceiling (issue 18).
    "sink_over_b3": 0.6,
    "decode_over_b2": 0.8,
    "sink_over_quix": 2.0,
    "sink_over_jdbc": 1.3,  # DESIGN.md section 12 and issue 18
    "p99_ms_at_half_max": 500.0,
    "redis_round_trips_per_event": 0.1,
    "rss_mb": 400.0,  # per worker process
    "sink_2workers_over_one": 1.3,  # two worker processes on this 2-core machine
}


def report(context: BenchContext, preload_s: float, total_s: float) -> dict[str, Any]:
    b0 = context.rate_of("b0")
    return {
        "input": {**describe(context.cdc), "preload_s": round(preload_s, 1)},
        "rows": [row.as_json(b0) for row in context.rows.values()],
        "targets": targets_met(context.rows),
        "machine": machine_facts(),
        "total_s": round(total_s, 1),
    }


def targets_met(rows: dict[str, Row]) -> dict[str, Any]:
    """DESIGN.md section 12's targets that this run can judge: value, target, met."""
    sink = rows.get("sink")
    checks: dict[str, Any] = {}

    def check(name: str, value: float | None, target: float, higher: bool = True) -> None:
        met = None if value is None else (value >= target if higher else value <= target)
        checks[name] = {"value": value, "target": target, "met": met}

    def rate(key: str) -> float | None:
        row = rows.get(key)
        return row.rate if row is not None and row.status == "ok" else None

    ours, b3, quix, jdbc = rate("sink"), rate("b3"), rate("quix"), rate("jdbc")
    check("sink_records_per_s", ours, TARGETS["sink_records_per_s"])
    check("sink_over_b3", _ratio(ours, b3), TARGETS["sink_over_b3"])
    check("decode_over_b2", _ratio(rate("decode"), rate("b2")), TARGETS["decode_over_b2"])
    check("sink_over_quix", _ratio(ours, quix), TARGETS["sink_over_quix"])
    check("sink_over_jdbc", _ratio(ours, jdbc), TARGETS["sink_over_jdbc"])
    workers = rows.get("sink-2workers")
    scaled = None if workers is None or workers.status != "ok" else workers.figures
    check(
        "sink_2workers_over_one",
        None if scaled is None else scaled.get("ratio_to_one_worker"),
        TARGETS["sink_2workers_over_one"],
    )
    latency = rows.get("latency")
    p99 = latency.figures.get("p99_ms") if latency is not None else None
    check("p99_ms_at_half_max", p99, TARGETS["p99_ms_at_half_max"], higher=False)
    trips = [r.figures.get("redis_round_trips_per_event") for r in rows.values()]
    known = [t for t in trips if t is not None]
    check(
        "redis_round_trips_per_event",
        max(known) if known else None,
        TARGETS["redis_round_trips_per_event"],
        higher=False,
    )
    # In-process rows share the harness process, which holds the run's input: what a
    # scenario added over that (peak minus before) is what a worker would add to its own
    # start-up size (about 100 MB of imports; measured by the naive Faust child).
    added = [
        r.figures["peak_rss_mb"] - r.figures["rss_before_mb"]
        for k, r in rows.items()
        if k in ("sink", "pipeline") and "rss_before_mb" in r.figures
    ]
    check(
        "rss_mb_added_by_sink_or_pipeline",
        round(max(added), 1) if added else None,
        TARGETS["rss_mb"],
        higher=False,
    )
    if sink is None:
        checks["note"] = "the sink scenario did not run"
    return checks


def _ratio(value: float | None, base: float | None) -> float | None:
    return None if not value or not base else round(value / base, 4)


def machine_facts() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = _load_average()
    return {
        "cores": multiprocessing.cpu_count(),
        "cpu_model": model,
        "load_average": load,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "confluent_kafka": confluent_kafka.__version__,
        "librdkafka": confluent_kafka.libversion()[0],
        "asyncpg": asyncpg.__version__,
        "fastavro": fastavro.__version__,
        "faust_streaming": _version("faust-streaming"),
        "quixstreams_peer": _peer_pin("quixstreams"),
        "kafka": KAFKA_VERSION,
        "debezium": DEBEZIUM_VERSION,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _load_average() -> list[float]:
    with contextlib.suppress(OSError):
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    return []


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _peer_pin(name: str) -> str | None:
    """The version the Quix peer's requirements pin (its venv is not ours to import)."""
    requirements = Path(__file__).resolve().parent / "peers" / "quix-requirements.txt"
    for line in requirements.read_text(encoding="utf-8").splitlines():
        if line.startswith(name) and "==" in line:
            return line.split("==", 1)[1].strip()
    return None


def _rate_text(row: Row) -> str:
    if row.rate is None:
        return row.status
    return f"{row.rate:,.0f}"


def render(result: dict[str, Any]) -> Table:
    """Every row: rate, ratio to B0 and the other figures it has."""
    title = f"BitVelocity benchmark, {result['input']['records']:,} CDC records"
    table = Table(title=title)
    for name, justify in (
        ("row", "left"),
        ("rate", "right"),
        ("unit", "left"),
        ("x B0", "right"),
        ("p50/p99 ms", "right"),
        ("CPU s/1k", "right"),
        ("peak RSS MB", "right"),
        ("Redis RT/event", "right"),
        ("load", "right"),
        ("note", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in result["rows"]:
        latency = ""
        if row.get("p50_ms") is not None:
            latency = f"{row['p50_ms']:,.0f} / {row['p99_ms']:,.0f}"
            if row.get("p999_ms") is not None:
                latency += f" / {row['p999_ms']:,.0f}"
        table.add_row(
            row["label"],
            "—" if row["rate"] is None else f"{row['rate']:,.0f}",
            row["unit"],
            "" if row["ratio_to_b0"] is None else f"{row['ratio_to_b0']:.3f}",
            latency,
            _fmt(row.get("cpu_s_per_1k_records"), "{:.3f}"),
            _fmt(row.get("peak_rss_mb"), "{:,.0f}"),
            _fmt(row.get("redis_round_trips_per_event"), "{:.4f}"),
            _fmt(row.get("load_average_1m"), "{:.1f}"),
            row["note"] if row["status"] == "ok" else f"{row['status']}: {row['note']}",
        )
    return table


def _fmt(value: float | None, pattern: str) -> str:
    return "" if value is None else pattern.format(value)


def render_targets(result: dict[str, Any]) -> Table:
    table = Table(title="DESIGN.md section 12 targets in this run")
    for name in ("target", "value", "wanted", "met"):
        table.add_column(name)
    for name, check in result["targets"].items():
        if not isinstance(check, dict):
            continue
        met = {True: "yes", False: "NO", None: "not measured"}[check["met"]]
        value = check["value"]
        table.add_row(name, "—" if value is None else f"{value:,.4g}", f"{check['target']:,}", met)
    return table


def names(rows: Sequence[dict[str, Any]]) -> set[str]:
    return {row["key"] for row in rows}
