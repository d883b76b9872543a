"""``bitvelocity bench --scenario analytics-scale``: the analytics state at a million events.

Issue 23's targets for one ``bitvelocity worker --agents analytics`` process, measured from
outside (``bench.worker_process``), on input generated straight into the CDC topics with
Debezium framing (``bench.cdc_events``): ``events`` order events (insert, two items, a status
change per order) for ``customers`` customers over ``days`` days.

- catch-up: the worker from offset 0 to the topics' ends (a first start: the state is built
  by replay, committed to its changelog as it goes, then reconciled with gold): events/s,
  the worker's CPU seconds and peak RSS;
- recovery: SIGKILL, its state folder deleted, started again: seconds from the new
  process's start until ``/features/customers/{id}`` answers (the state restored from the
  changelog alone, the tail replayed, reconciled); the answers for a sample of customers
  must equal those before the kill (a mismatch is reported, and fails the smoke test);
- memory probe: the same again with ``probe_customers`` customers (4 events per order, so
  ``4 x probe_customers`` events): peak RSS, whatever the number of customers.

Targets: peak RSS <= 400 MB per worker; answering again <= 30 s. Not a test: no figure is
asserted. Everything it creates is removed afterwards.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.cdc_events import TABLES, CdcInput, preload
from bench.harness import delete_topics_named
from bench.pipeline_env import (
    PipelineNames,
    delete_consumer_groups,
    delete_feature_keys,
    delete_subjects,
    derive,
)
from bench.sink import Warehouses
from bench.worker_process import AnalyticsWorkerProcess
from config.settings import Settings, load_settings
from oltp.schema import migrate_oltp
from serdes.registry import RegistryClient

RESULTS = Path(__file__).resolve().parent / "results" / "analytics_scale.json"
NAMES = PipelineNames("bv_ascale_", "bvascale", "bv-ascale-", "bv-ascale-")
TARGET_PEAK_RSS_MB = 400.0
TARGET_ANSWERING_S = 30.0
#: Fields of a features answer that say when it was asked, not what it holds.
_STAMP_FIELDS = ("now", "watermark", "features_as_of", "as_of", "freshness_s")
console = Console(width=150)


@dataclass(frozen=True)
class ScaleOptions:
    events: int = 1_000_000
    customers: int = 200_000
    days: int = 40
    probe_customers: int = 1_000_000  # 0: no memory probe
    partitions: int = 3
    sample: int = 100  # customers whose answers are compared across the recovery
    timeout_s: float = 1_800.0
    json_path: Path | None = RESULTS


@dataclass
class Run:
    """One worker's pipeline: its settings, warehouse, state folder and log."""

    settings: Settings
    database: str
    state_dir: Path
    log: Path
    cdc: CdcInput | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        s = self.settings
        return {
            "BV_POSTGRES__DATABASE": self.database,
            "BV_TOPICS__CDC_PREFIX": s.topics.cdc_prefix,
            "BV_KAFKA__CONSUMER_GROUP": s.kafka.consumer_group,
            "BV_TOPICS__HOURLY_REVENUE": s.topics.hourly_revenue,
            "BV_TOPICS__CUSTOMER_FEATURES": s.topics.customer_features,
            "BV_TOPICS__LATE_EVENTS": s.topics.late_events,
            "BV_TOPICS__ANALYTICS_STATE": s.topics.analytics_state,
            "BV_FEATURES__REDIS_PREFIX": s.features.redis_prefix,
            "BV_FEATURES__IDLE_PARTITION_AFTER": "PT1S",
            "BV_FEATURES__STATE_DIR": str(self.state_dir),
            "BV_FEATURES__REPLAY_COMMIT_ENTRIES": str(s.features.replay_commit_entries),
            "BV_FEATURES__STATE_CACHE_ENTRIES": str(s.features.state_cache_entries),
        }


def _named(base: Settings, label: str, scratch: Path) -> Settings:
    """``base`` with every name this run writes under its own prefix (topics, changelog,
    consumer group, Redis keys)."""
    prefix = f"{base.topics.cdc_prefix}-{label}"
    return base.model_copy(
        update={
            "topics": base.topics.model_copy(
                update={
                    "cdc_prefix": prefix,
                    "hourly_revenue": f"{prefix}.hourly-revenue",
                    "customer_features": f"{prefix}.customer-features",
                    "late_events": f"{prefix}.late-events",
                    "analytics_state": f"{prefix}.analytics-state",
                }
            ),
            "kafka": base.kafka.model_copy(
                update={"consumer_group": f"{base.kafka.consumer_group}-{label}"}
            ),
            "features": base.features.model_copy(
                update={"redis_prefix": f"bv:{prefix}:features:customer:", "state_dir": scratch}
            ),
        }
    )


async def _until(check: Any, timeout_s: float, what: str, worker: AnalyticsWorkerProcess) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout_s:.0f} s: {worker.tail(1500)}")
        await asyncio.sleep(0.25)


def _caught_up(worker: AnalyticsWorkerProcess, marks: dict[tuple[str, int], int]) -> bool:
    health = worker.answer("/health")
    if health is None:
        return False
    read = {(p["topic"], p["partition"]): p["next_offset"] for p in health["positions"]}
    if health.get("features_pending"):
        return False  # read to the end, but flushes still recompute customers
    return all(read.get(key, 0) >= end for key, end in marks.items())


def _features(worker: AnalyticsWorkerProcess, customers: list[int]) -> dict[int, Any]:
    answers = {}
    for customer in customers:
        answer = worker.answer(f"/features/customers/{customer}")
        if answer is not None:
            answers[customer] = {k: v for k, v in answer.items() if k not in _STAMP_FIELDS}
    return answers


async def _catch_up(run: Run, worker: AnalyticsWorkerProcess, timeout_s: float) -> None:
    assert run.cdc is not None
    marks = {k: v for k, v in run.cdc.marks.items() if v}
    worker.start()
    started = time.monotonic()
    await _until(lambda: _caught_up(worker, marks), timeout_s, "catch-up", worker)
    seconds = time.monotonic() - started
    await asyncio.sleep(2.0)  # the flush after the catch-up (a few flush intervals)
    health = await asyncio.to_thread(worker.answer, "/health") or {}
    run.figures["catch_up"] = {
        "state_commits": health.get("state_commits"),
        "events": run.cdc.total,
        "seconds": round(seconds, 1),
        "events_per_s": round(run.cdc.total / seconds),
        "worker_cpu_s": round(worker.cpu_s(), 1),
        "peak_rss_mb": round(worker.status_mb("VmHWM"), 1),
        "rss_mb": round(worker.status_mb("VmRSS"), 1),
    }


async def _recover(run: Run, worker: AnalyticsWorkerProcess, options: ScaleOptions) -> None:
    """SIGKILL, delete the state folder, start again: until a feature view answers."""
    assert run.cdc is not None
    step = max(options.customers // max(options.sample, 1), 1)
    sample = list(range(1, options.customers + 1, step))[: options.sample]
    before = await asyncio.to_thread(_features, worker, sample)
    worker.kill()
    shutil.rmtree(run.state_dir, ignore_errors=True)
    worker.start()
    probe = f"/features/customers/{next(iter(before), sample[0])}"
    await _until(lambda: worker.answer(probe), options.timeout_s, "answering again", worker)
    answering_s = time.monotonic() - worker.started
    health = await asyncio.to_thread(worker.answer, "/health") or {}
    after = await asyncio.to_thread(_features, worker, sample)
    differing = sorted(c for c in before.keys() | after.keys() if before.get(c) != after.get(c))
    restore = health.get("restore") or {}
    run.figures["recovery"] = {
        "answering_s": round(answering_s, 1),
        "restore_s": round(restore.get("seconds", 0.0), 1),
        "changelog_records": restore.get("changelog_records"),
        "changelog_mb": round((restore.get("changelog_bytes") or 0) / 1e6, 1),
        "state_entries": restore.get("state_entries"),
        "recovered_after_s": health.get("recovered_after_s"),
        "peak_rss_mb": round(worker.status_mb("VmHWM"), 1),
        "customers_compared": len(before),
        "customers_differing": differing[:20],
    }


async def _measure(
    run: Run, options: ScaleOptions, *, events: int, customers: int, recover: bool
) -> dict[str, Any]:
    settings = run.settings
    topics = {table: settings.topics.cdc_topic(table) for table in TABLES}
    console.log(f"preloading {events:,} CDC records for {customers:,} customers")
    with RegistryClient(settings.registry) as registry:
        run.cdc = await asyncio.to_thread(
            preload,
            settings.kafka.bootstrap_servers,
            registry,
            topics,
            records=events,
            partitions=options.partitions,
            customers=customers,
            spread=timedelta(days=options.days),
            keep_records=False,
        )
    worker = AnalyticsWorkerProcess(run.environment(), run.log)
    try:
        console.log(f"worker catching up on {run.cdc.total:,} events")
        await _catch_up(run, worker, options.timeout_s)
        if recover:
            console.log("worker killed, state folder deleted, started again")
            await _recover(run, worker, options)
    finally:
        worker.stop()
    return {"customers": customers, "orders": run.cdc.orders, **run.figures}


def _cleanup(base: Settings, runs: list[Run], warehouses: Warehouses) -> None:
    bootstrap = base.kafka.bootstrap_servers
    delete_topics_named(bootstrap, base.topics.cdc_prefix)
    delete_consumer_groups(
        bootstrap, [r.settings.kafka.consumer_group + "-analytics" for r in runs]
    )
    for run in runs:
        s = run.settings.topics
        delete_subjects(
            run.settings,
            [*(s.cdc_topic(t) for t in TABLES), s.hourly_revenue, s.customer_features],
        )
    asyncio.run(warehouses.drop_all())


async def _delete_feature_keys(runs: list[Run]) -> None:
    for run in runs:
        await delete_feature_keys(run.settings)


def run_scale(options: ScaleOptions, settings: Settings | None = None) -> dict[str, Any]:
    """The catch-up and recovery run, then the memory probe; returns (and writes) figures."""
    base = derive(settings or load_settings(), secrets.token_hex(3), 5_000, NAMES)
    scratch = Path(tempfile.mkdtemp(prefix="bv-analytics-scale-"))
    warehouses = Warehouses(base)
    warehouses.created.append(base.postgres.database)
    runs: list[Run] = []
    started = time.monotonic()
    try:
        asyncio.run(migrate_oltp(base))  # the worker role's password, as `bitvelocity migrate`
        sizes = [("main", options.events, options.customers, True)]
        if options.probe_customers:
            probe_events = 4 * options.probe_customers
            sizes.append(("probe", probe_events, options.probe_customers, False))
        result: dict[str, Any] = {}
        for label, events, customers, recover in sizes:
            named = _named(base, label, scratch / label)
            database = asyncio.run(warehouses.fresh(label))
            run = Run(named, database, scratch / label / "state", scratch / f"{label}.log")
            run.state_dir.mkdir(parents=True)
            runs.append(run)
            result[label] = asyncio.run(
                _measure(run, options, events=events, customers=customers, recover=recover)
            )
    finally:
        asyncio.run(_delete_feature_keys(runs))
        _cleanup(base, runs, warehouses)
        shutil.rmtree(scratch, ignore_errors=True)
    report = _report(options, result, time.monotonic() - started)
    if options.json_path is not None:
        options.json_path.parent.mkdir(parents=True, exist_ok=True)
        options.json_path.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _report(options: ScaleOptions, result: dict[str, Any], total_s: float) -> dict[str, Any]:
    peaks = [
        figures[phase]["peak_rss_mb"]
        for figures in result.values()
        for phase in ("catch_up", "recovery")
        if phase in figures
    ]
    recovery = result["main"].get("recovery", {})
    return {
        "options": {k: v for k, v in options.__dict__.items() if k != "json_path"},
        **result,
        "targets": {
            "peak_rss_mb": {"value": max(peaks), "target": TARGET_PEAK_RSS_MB},
            "answering_again_s": {
                "value": recovery.get("answering_s"),
                "target": TARGET_ANSWERING_S,
            },
            "equal_after_recovery": not recovery.get("customers_differing"),
        },
        "total_s": round(total_s, 1),
    }


def render(report: dict[str, Any]) -> Table:
    table = Table(title="analytics at scale: one worker (issue 23)")
    for column in ("run", "measure", "value", "target"):
        table.add_column(column)
    for label in ("main", "probe"):
        figures = report.get(label)
        if figures is None:
            continue
        catch_up = figures["catch_up"]
        who = f"{label}: {catch_up['events']:,} events, {figures['customers']:,} customers"
        table.add_row(who, "catch-up events/s", f"{catch_up['events_per_s']:,}", "")
        table.add_row("", "worker CPU s", f"{catch_up['worker_cpu_s']}", "")
        table.add_row(
            "", "peak RSS MB", f"{catch_up['peak_rss_mb']}", f"<= {TARGET_PEAK_RSS_MB:.0f}"
        )
        recovery = figures.get("recovery")
        if recovery:
            table.add_row("", "answering again s", f"{recovery['answering_s']}", "<= 30")
            table.add_row("", "  restore s", f"{recovery['restore_s']}", "")
            table.add_row("", "  changelog records", f"{recovery['changelog_records']:,}", "")
            table.add_row("", "  peak RSS MB", f"{recovery['peak_rss_mb']}", "<= 400")
            differing = recovery["customers_differing"]
            table.add_row(
                "",
                "answers equal after recovery",
                f"{recovery['customers_compared'] - len(differing)}/"
                f"{recovery['customers_compared']}",
                "all",
            )
    return table
