"""Publish alerts to one durable RabbitMQ queue and return only once the broker confirmed them.

The channel runs in publisher-confirm mode; ``publish_all`` sends a batch concurrently and
awaits every confirmation. Messages are persistent (delivery mode 2) on a durable queue, so
a confirmed message survives a broker restart. Anything short of a full confirmation (broker
unreachable, a nack, an unroutable return, a timeout) drops the connection and raises
``BrokerUnavailableError`` (transient): the caller keeps its input uncommitted and sends the
whole batch again later, with the same ``message_id``s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection
from aio_pika.connection import make_url

from alerts.messages import Alert
from config.errors import TransientError
from config.lifecycle import AsyncStartStop
from config.settings import RabbitMQSettings

_BROKER_ERRORS = (
    OSError,
    TimeoutError,
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.AMQPException,
    ConnectionError,
)

log = logging.getLogger("bitvelocity.alerts")


class BrokerUnavailableError(TransientError):
    """RabbitMQ did not confirm a batch: send it again later."""


class ConfirmedPublisher(AsyncStartStop):
    """One connection and confirm-mode channel, remade after a failure; ``start()``/``stop()``."""

    def __init__(self, settings: RabbitMQSettings, queue: str | None = None) -> None:
        self._settings = settings
        self.queue = queue or settings.alerts_queue
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None

    async def start(self) -> None:
        """Connect and declare the queue now if the broker answers (consumers can bind at
        once); if it does not, the first publish tries again, so a broker that is down at
        start only delays delivery."""
        try:
            await self._open()
        except _BROKER_ERRORS as exc:
            await self._disconnect()
            log.warning("RabbitMQ not reachable yet (%s); alerts wait for it", exc)

    async def stop(self) -> None:
        await self._disconnect()

    async def publish_all(self, alerts: Sequence[Alert]) -> None:
        """Every alert confirmed by the broker, or ``BrokerUnavailableError``."""
        if not alerts:
            return
        try:
            channel = await self._open()
            exchange = channel.default_exchange
            timeout = self._settings.confirm_timeout_s
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            alert.encode(),
                            message_id=alert.message_id,
                            type=alert.kind,
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=self.queue,
                        mandatory=True,
                        timeout=timeout,
                    )
                    for alert in alerts
                )
            )
        except (*_BROKER_ERRORS, aio_pika.exceptions.DeliveryError) as exc:
            await self._disconnect()
            raise BrokerUnavailableError(
                f"RabbitMQ at {self._settings.host}:{self._settings.port} did not confirm "
                f"{len(alerts)} alerts for queue {self.queue} ({type(exc).__name__}: {exc}); "
                "they are sent again (is it running? `bitvelocity stack status --with-scaleout`)"
            ) from exc

    async def _open(self) -> AbstractChannel:
        if self._channel is not None and not self._channel.is_closed:
            return self._channel
        await self._disconnect()
        # Not ``aio_pika.connect``: when the broker refuses, it drops its half-made connection
        # unclosed, and that object's ``__del__`` later makes a never-awaited ``close()``.
        connection = aio_pika.Connection(make_url(self._settings.url()))
        try:
            await connection.connect(timeout=self._settings.confirm_timeout_s)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(self.queue, durable=True)
        self._channel = channel
        return channel

    async def _disconnect(self) -> None:
        self._channel = None
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with contextlib.suppress(*_BROKER_ERRORS):
                await connection.close()
