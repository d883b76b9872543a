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
from collections.abc import Sequence

from agents.medallion import MedallionSink, SinkStats
from config.errors import ConfigurationError
from config.settings import Settings
from observability.logging import configure_logging
from observability.metrics import default_metrics
from observability.server import MetricsServer
from quality.gate import RulesQualityGate

log = logging.getLogger("bitvelocity.worker")
AGENTS = ("medallion",)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def run_worker(
    settings: Settings,
    agents: Sequence[str] = AGENTS,
    *,
    worker_id: str | None = None,
    stop: asyncio.Event | None = None,
    serve_metrics: bool = True,
) -> dict[str, SinkStats]:
    """Run the chosen agents until ``stop`` is set (or SIGTERM/SIGINT arrives)."""
    unknown = set(agents) - set(AGENTS)
    if unknown:
        raise ConfigurationError(
            f"unknown agent(s) {', '.join(sorted(unknown))}; choose from {', '.join(AGENTS)}"
        )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    identity = worker_id or default_worker_id()
    metrics_server = (
        MetricsServer.from_settings(default_metrics().registry, settings.web)
        if serve_metrics
        else None
    )
    if metrics_server is not None:
        metrics_server.start()
    try:
        sink = MedallionSink(settings, RulesQualityGate(settings), worker_id=identity)
        log.info("worker %s running agents %s", identity, ", ".join(agents))
        stats = await sink.run(stop)
        log.info("worker %s stopped after %d batches", identity, stats.batches)
        return {"medallion": stats}
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if metrics_server is not None:
            metrics_server.stop()


def main_worker(
    settings: Settings, agents: Sequence[str], worker_id: str | None, serve_metrics: bool
) -> None:
    """Blocking entry point for the CLI."""
    configure_logging(settings.log_level)
    asyncio.run(run_worker(settings, agents, worker_id=worker_id, serve_metrics=serve_metrics))
