"""Read back what reached a RabbitMQ queue (the tests' independent consumer)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aio_pika
import orjson

from config.settings import RabbitMQSettings


async def drain_queue(
    settings: RabbitMQSettings,
    queue: str,
    done: Callable[[list[dict[str, Any]]], bool],
    timeout_s: float,
    *,
    settle_s: float = 1.0,
    delete: bool = True,
) -> list[dict[str, Any]]:
    """Every message of ``queue`` (acknowledged) until ``done`` holds and ``settle_s`` passed
    without another; each as its JSON body plus ``_message_id`` (the AMQP property)."""
    received: list[dict[str, Any]] = []
    connection = await aio_pika.connect(settings.url(), timeout=10)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, durable=True)
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while True:
            message = await declared.get(no_ack=False, fail=False, timeout=5)
            if message is not None:
                body = orjson.loads(message.body)
                received.append({**body, "_message_id": message.message_id})
                await message.ack()
                quiet_since = time.monotonic()
                continue
            if done(received) and time.monotonic() - quiet_since >= settle_s:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s; received {received}")
            await asyncio.sleep(0.1)
        if delete:
            await declared.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
    return received
