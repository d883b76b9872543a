"""``bitvelocity alerts relay``: quality ERROR alerts and DLQ notifications to RabbitMQ."""

from __future__ import annotations

import asyncio
import signal

import typer

from agents.alert_relay import AlertRelay
from cli.console import out
from config.settings import Settings, load_settings

alerts_app = typer.Typer(
    help="Alerts: relay quality ERROR alerts and DLQ notifications to RabbitMQ (confirmed).",
    no_args_is_help=True,
)


async def _relay(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    relay = AlertRelay(settings)
    await relay.run(stop)
    out.print(f"relay stopped: {relay.confirmed} alerts confirmed by RabbitMQ")


@alerts_app.command("relay")
def relay_command() -> None:
    """Forward quality-alerts and every *.dlq record to the durable queue until Ctrl-C.

    Offsets are committed only after RabbitMQ confirmed the batch, so nothing is lost while
    the broker is down; consumers deduplicate by message_id (at-least-once). `bitvelocity
    worker` runs it too when BV_RABBITMQ__ALERTS_ENABLED=true.
    """
    settings = load_settings()
    r = settings.rabbitmq
    out.print(
        f"relaying {settings.topics.quality_alerts} and {r.dlq_pattern} "
        f"to {r.host}:{r.port} queue {r.alerts_queue}"
    )
    asyncio.run(_relay(settings))
