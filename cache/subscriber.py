"""The L1 side of invalidation: listen on the channel, hand each message to a callback.

Pub/sub delivers at most once: while the subscription is down, messages are lost. So the
listener reports ``lost`` when it disconnects (the L1 must drop everything and stop
filling) and again after it re-subscribes (anything may have changed meanwhile); it
reconnects by itself with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
import redis.exceptions

from cache.codec import CacheEntryError, Invalidation, decode_invalidation

log = logging.getLogger("bitvelocity.cache")
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class InvalidationListener:
    """Subscribes ``channel`` on clients made by ``connect``; ``start()``/``stop()``."""

    def __init__(
        self,
        connect: Callable[[], aioredis.Redis],
        channel: str,
        on_message: Callable[[Invalidation], None],
        on_lost: Callable[[], None],
        *,
        max_backoff_s: float = 2.0,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._on_message = on_message
        self._on_lost = on_lost
        self._max_backoff_s = max_backoff_s
        self._task: asyncio.Task[None] | None = None
        #: Set while subscribed: only then may an L1 keep what it reads.
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"cache-listener-{self._channel}")

    async def wait_connected(self, timeout_s: float) -> None:
        await asyncio.wait_for(self.connected.wait(), timeout=timeout_s)

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        attempt = 0
        while True:
            client = self._connect()
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                if attempt or self.reconnects:
                    self._on_lost()  # messages published while we were away are gone
                self.connected.set()
                attempt = 0
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        self._on_message(decode_invalidation(message["data"]))
                    except CacheEntryError as exc:
                        log.warning("ignored on %s: %s", self._channel, exc)
            except _REDIS_DOWN as exc:
                if self.connected.is_set():
                    self.connected.clear()
                    self._on_lost()
                    self.reconnects += 1
                    log.warning("invalidation channel %s lost (%s)", self._channel, exc)
                attempt += 1
            finally:
                with contextlib.suppress(*_REDIS_DOWN):
                    await pubsub.aclose()
                with contextlib.suppress(*_REDIS_DOWN):
                    await client.aclose()
            await asyncio.sleep(min(self._max_backoff_s, 0.05 * 2**attempt))
