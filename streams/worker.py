"""``bitvelocity worker``: the long-running process that runs the pipeline's agents.

Several workers (on one or more machines) with the same settings form one consumer group
and share the partitions. SIGTERM or SIGINT: the batch in flight finishes and commits,
the consumer leaves the group, the process exits (within seconds, well under 10 s).
A crash loses nothing: the offsets live in PostgreSQL with the rows.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agents.alert_relay import AlertRelay
from agents.analytics import AnalyticsRunner, analytics_topics, heartbeat_topic
from agents.analytics_state import state_store
from agents.cache_invalidation import PIPELINE as CACHE_INVALIDATION
from agents.cache_invalidation import CacheInvalidationAgent
from agents.cache_service import run_cache_service
from agents.medallion import MedallionSink, SinkStats
from agents.product_updates import PIPELINE as PRODUCT_UPDATES
from agents.product_updates import ProductUpdatesAgent
from alerts.quality_alerting import quality_gate
from config.errors import ConfigurationError
from config.settings import Settings
from observability.dashboard import dashboard_page
from observability.disk import register_disk_usage
from observability.logging import configure_logging
from observability.metrics import default_metrics
from observability.pipeline_probes import probe_analytics, probe_group_lag
from observability.server import MetricsServer
from serdes.own_schemas import register_all
from serdes.registry import RegistryClient
from stack.disk import disk_usage_collector
from streams.analytics_views import AnalyticsWebServer, analytics_web_app
from streams.memory import limit_malloc_arenas, tune_garbage_collector

log = logging.getLogger("bitvelocity.worker")
#: What ``bitvelocity worker`` runs without ``--agents``.
AGENTS = ("medallion", "analytics", "cache")
#: Every agent a worker can run: the lake sink (bronze in Delta) and the scale-out stores
#: (Cassandra, MongoDB; ``stack up --with-scaleout``) only when named.
ALL_AGENTS = (*AGENTS, "lake", "stores")


def with_scaleout_bronze(settings: Settings) -> Settings:
    """``settings`` with the scale-out event topics added to the medallion sink (0015)."""
    return settings.model_copy(
        update={"sink": settings.sink.model_copy(update={"scaleout_bronze": True})}
    )


def cache_groups(settings: Settings) -> dict[str, tuple[str, list[str]]]:
    """The cache's pipelines, their consumer groups and topics (for their lag)."""
    derive, evict = ProductUpdatesAgent(settings), CacheInvalidationAgent(settings)
    return {
        PRODUCT_UPDATES: (derive.group_id, [derive.source_topic]),
        CACHE_INVALIDATION: (evict.group_id, [evict.topic]),
    }


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def analytics_health(runner: AnalyticsRunner) -> dict[str, Any]:
    """What ``GET /health`` adds: recovery figures and how far each partition was read."""
    restore = runner.restore
    return {
        "recovered_after_s": runner.recovered_after_s,
        "restore": None if restore is None else restore.__dict__,
        "state_commits": None if runner.store is None else runner.store.commits,
        "positions": [
            {"topic": topic, "partition": partition, "next_offset": offset}
            for (topic, partition), offset in sorted(runner.positions.items())
        ],
    }


def analytics_service(settings: Settings) -> tuple[AnalyticsRunner, AnalyticsWebServer]:
    """The analytics runner (changelog-backed state) and its web views (BV_WEB__*)."""
    group_id = f"{settings.kafka.consumer_group}-analytics"
    runner = AnalyticsRunner(settings, group_id=group_id, store=state_store(settings, group_id))
    app = analytics_web_app(
        lambda: None if runner.recovering else runner.core,
        token=settings.web.token,
        health=lambda: analytics_health(runner),
    )
    return runner, AnalyticsWebServer(app, host=settings.web.host, port=settings.web.port)


async def run_worker(
    settings: Settings,
    agents: Sequence[str] = AGENTS,
    *,
    worker_id: str | None = None,
    stop: asyncio.Event | None = None,
    serve_metrics: bool = True,
    on_analytics: Callable[[AnalyticsRunner], None] | None = None,
) -> dict[str, SinkStats]:
    """Run the chosen agents until ``stop`` is set (or SIGTERM/SIGINT arrives).

    ``on_analytics`` receives the analytics runner once made (the demo waits on its
    positions and flushes it before judging gold).
    """
    unknown = set(agents) - set(ALL_AGENTS)
    if unknown:
        raise ConfigurationError(
            f"unknown agent(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL_AGENTS)}"
        )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    identity = worker_id or default_worker_id()
    metrics_server = _start_metrics_server(settings) if serve_metrics else None
    try:
        with RegistryClient(settings.registry) as registry:  # our own output schemas
            await asyncio.to_thread(register_all, settings, registry)
        log.info("worker %s running agents %s", identity, ", ".join(agents))
        results: dict[str, SinkStats] = {}
        # One task per agent; if one fails the others are cancelled and the process exits
        # non-zero (nothing uncommitted is lost: every agent resumes from its offsets).
        async with asyncio.TaskGroup() as group:
            medallion = await _start_agents(group, settings, agents, identity, stop, on_analytics)
        if medallion is not None:
            results["medallion"] = medallion.result()
            log.info("worker %s stopped after %d batches", identity, results["medallion"].batches)
        return results
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if metrics_server is not None:
            metrics_server.stop()


def _start_metrics_server(settings: Settings) -> MetricsServer:
    """``/metrics`` and the dashboard, plus the state and disk sizes (``bv_state_bytes``,
    ``bv_filesystem_*``) the disk alerts read."""
    registry = default_metrics().registry
    server = MetricsServer.from_settings(registry, settings.web, dashboard=dashboard_page(settings))
    register_disk_usage(registry, disk_usage_collector(settings))
    server.start()
    return server


async def _start_agents(
    group: asyncio.TaskGroup,
    settings: Settings,
    agents: Sequence[str],
    identity: str,
    stop: asyncio.Event,
    on_analytics: Callable[[AnalyticsRunner], None] | None,
) -> asyncio.Task[SinkStats] | None:
    """One task per chosen agent in ``group``; the medallion sink's task, if chosen."""
    medallion = None
    if "medallion" in agents:
        sink = MedallionSink(settings, quality_gate(settings), worker_id=identity)
        medallion = group.create_task(sink.run(stop))
        if settings.rabbitmq.alerts_enabled:  # quality alerts and DLQ -> RabbitMQ
            group.create_task(AlertRelay(settings).run(stop))
    if "analytics" in agents:
        runner, views = analytics_service(settings)
        if on_analytics is not None:
            on_analytics(runner)
        await views.start()
        log.info("analytics views on http://%s:%d", views.host, views.port)
        group.create_task(_serving(runner.run(stop), views))
        topics = [*analytics_topics(settings), heartbeat_topic(settings)]
        group.create_task(probe_analytics(settings, runner, topics, default_metrics(), stop))
    if "lake" in agents:
        group.create_task(_lake(settings, identity, stop))
    if "stores" in agents:
        group.create_task(_stores(settings, stop))
    if "cache" in agents:
        group.create_task(run_cache_service(settings, stop))
        group.create_task(
            probe_group_lag(settings, cache_groups(settings), default_metrics(), stop)
        )
    return medallion


async def _stores(settings: Settings, stop: asyncio.Event) -> None:
    """The scale-out stores; their drivers (Cassandra, MongoDB) load only in a worker that
    runs them (about 16 MB of RSS otherwise)."""
    from agents.scaleout_stores import ScaleoutStores

    await ScaleoutStores(settings).run(stop)


async def _lake(settings: Settings, worker_id: str, stop: asyncio.Event) -> None:
    """The lake sink: its Delta writes run in threads, which wait on a thread-safe stop.
    deltalake and pyarrow load only in a worker that runs it (about 56 MB of RSS otherwise:
    the analytics and sink workers have a 400 MB budget)."""
    from agents.lakehouse import LakeSink

    stopping = threading.Event()
    relay = asyncio.ensure_future(stop.wait())
    relay.add_done_callback(lambda _: stopping.set())
    try:
        await LakeSink(settings, worker_id=worker_id).serve(stopping)
    finally:
        relay.cancel()


async def _serving(run: Awaitable[object], views: AnalyticsWebServer) -> None:
    try:
        await run
    finally:
        await views.stop()


def main_worker(
    settings: Settings, agents: Sequence[str], worker_id: str | None, serve_metrics: bool
) -> None:
    """Blocking entry point for the CLI."""
    configure_logging(settings.log_level)
    limit_malloc_arenas()  # before the consumers and the state folder start their threads
    tune_garbage_collector(settings.worker.gc_gen0_threshold)
    asyncio.run(run_worker(settings, agents, worker_id=worker_id, serve_metrics=serve_metrics))
