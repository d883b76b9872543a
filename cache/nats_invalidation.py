"""Cache evictions fanned out on NATS (subject ``cache.invalidate``) for services outside Python.

Redis stays the invalidation of record: the agent deletes the L2 entries and broadcasts the
keys on the Redis channel in one MULTI, and only then hands the same eviction to
``NatsInvalidationPublisher.submit``, which never waits for NATS. So NATS being slow, down
or misconfigured cannot delay or fail a Redis invalidation. Messages wait in a bounded
queue; one background task publishes them in order, each followed by a flush (a PING/PONG
round trip, so the server has it). A failed attempt is counted in
``bv_message_publish_failures_total{broker="nats",outcome="retried"}``, the connection is
dropped and the same message is retried with exponential backoff; when the queue is full the
oldest message is dropped and counted (``outcome="dropped"``). Delivery is at least once
within the process lifetime: a flush that failed after the server received the message
publishes it again (evicting twice is harmless). NATS core has no persistence: subscribers
that are away miss messages, as with Redis pub/sub.

The payload (JSON): ``{"keys": ["product:42", "category:7"], "source": [{"topic":
"product-updates", "partition": 0, "first_offset": 10, "last_offset": 12}], "changed_at":
"<newest source commit, ISO 8601 UTC>", "evicted_at": "<ISO 8601 UTC>"}``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import nats
import orjson
from nats.aio.client import Client as NatsClient

from cache.keys import CacheKey
from config.lifecycle import AsyncStartStop
from config.settings import NatsSettings
from observability.metrics import Metrics, default_metrics
from serdes.consumer_step import Backoff

log = logging.getLogger("bitvelocity.cache.nats")
BROKER = "nats"


@dataclass(frozen=True, slots=True)
class SourceRange:
    """The offsets of one partition that a batch of evictions came from."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int


def source_ranges(positions: Iterable[tuple[str, int, int]]) -> list[SourceRange]:
    """``(topic, partition, offset)`` of each consumed record -> one range per partition."""
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    for topic, partition, offset in positions:
        low, high = ranges.get((topic, partition), (offset, offset))
        ranges[(topic, partition)] = (min(low, offset), max(high, offset))
    return [SourceRange(t, p, low, high) for (t, p), (low, high) in sorted(ranges.items())]


def eviction_message(
    keys: Sequence[CacheKey],
    source: Sequence[SourceRange],
    changed_at: datetime | None,
    evicted_at: datetime,
) -> bytes:
    """The JSON a non-Python subscriber of ``cache.invalidate`` receives."""
    return orjson.dumps(
        {
            "keys": [str(key) for key in keys],
            "source": [
                {
                    "topic": r.topic,
                    "partition": r.partition,
                    "first_offset": r.first_offset,
                    "last_offset": r.last_offset,
                }
                for r in source
            ],
            "changed_at": changed_at.isoformat() if changed_at is not None else None,
            "evicted_at": evicted_at.isoformat(),
        }
    )


class NatsInvalidationPublisher(AsyncStartStop):
    """Publishes submitted messages on one subject in the background; ``start()``/``stop()``."""

    def __init__(self, settings: NatsSettings, metrics: Metrics | None = None) -> None:
        self._settings = settings
        self.subject = settings.invalidation_subject
        self._metrics = metrics or default_metrics()
        self._queue: collections.deque[bytes] = collections.deque()
        self._wakeup = asyncio.Event()
        #: Set while nothing waits to be published.
        self._drained = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: NatsClient | None = None
        self._backoff = Backoff(settings.retry_initial_backoff_s, settings.retry_max_backoff_s)
        self.published = 0
        self.failures = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(self, payload: bytes) -> None:
        """Queue ``payload`` for publishing; never blocks, never raises for NATS' sake."""
        if len(self._queue) >= self._settings.max_pending:
            self._queue.popleft()
            self.dropped += 1
            self._metrics.record_publish_failure(BROKER, self.subject, "dropped")
        self._queue.append(payload)
        self._drained.clear()
        self._wakeup.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"nats-publisher-{self.subject}")

    async def stop(self, drain_timeout_s: float = 2.0) -> None:
        """Give queued messages ``drain_timeout_s`` to go out, then stop."""
        if self._queue and self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout=drain_timeout_s)
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._disconnect()

    async def _run(self) -> None:
        attempt = 0
        while True:
            if not self._queue:
                self._drained.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            payload = self._queue[0]
            try:
                await self._publish(payload)
            except (OSError, TimeoutError, nats.errors.Error) as exc:
                self.failures += 1
                self._metrics.record_publish_failure(BROKER, self.subject, "retried")
                log.warning(
                    "publishing on NATS %s at %s failed (retry %d, %d queued): %s",
                    self.subject,
                    self._settings.url,
                    attempt,
                    len(self._queue),
                    exc or type(exc).__name__,
                )
                await self._disconnect()
                await asyncio.sleep(self._backoff.delay(attempt))
                attempt += 1
                continue
            attempt = 0
            if self._queue and self._queue[0] is payload:
                self._queue.popleft()
            self.published += 1
            self._metrics.record_published(BROKER, self.subject)

    async def _publish(self, payload: bytes) -> None:
        client = await self._connect()
        await client.publish(self.subject, payload)
        await client.flush(timeout=math.ceil(self._settings.timeout_s))

    async def _connect(self) -> NatsClient:
        if self._client is not None and self._client.is_connected:
            return self._client
        await self._disconnect()
        token = self._settings.token.get_secret_value() or None
        # We reconnect ourselves, so a failure always reaches the retry loop above instead
        # of being buffered by the client (nats-py's 0 attempts would mean "forever").
        client = NatsClient()
        connecting = client.connect(
            servers=[self._settings.url],
            token=token,
            connect_timeout=math.ceil(self._settings.timeout_s),
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0,
            error_cb=_ignore_error,
        )
        try:
            await asyncio.wait_for(connecting, timeout=3 * self._settings.timeout_s)
        except BaseException:
            # a failed attempt leaves the client's socket open unless we close it
            with contextlib.suppress(OSError, TimeoutError, nats.errors.Error):
                await client.close()
            raise
        self._client = client
        return client

    async def _disconnect(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(OSError, TimeoutError, nats.errors.Error):
                await client.close()


async def _ignore_error(exc: Exception) -> None:
    """nats-py reports connection errors here too; the publish loop logs and counts them."""
    log.debug("nats client: %s", exc)
