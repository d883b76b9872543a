"""NATS unreachable: cache evictions wait (counted as failures), then go out in order.

The publisher reaches the stack's NATS through a TCP proxy that refuses service for a while
(the outage); the subscriber is connected directly the whole time, so it sees exactly what
the publisher delivered once the proxy lets it through.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import UTC, datetime

import nats
import orjson
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from cache.keys import CacheKey, CacheKind
from cache.nats_invalidation import NatsInvalidationPublisher, SourceRange, eviction_message
from config.settings import Settings
from observability.metrics import Metrics
from tests.faults.tcp_proxy import FlakyProxy
from tests.integration.scaleout_env import require_scaleout


async def test_evictions_submitted_while_nats_is_down_arrive_after_it_returns(
    settings: Settings,
) -> None:
    require_scaleout(settings)
    subject = f"cache.invalidate.test.{secrets.token_hex(4)}"
    proxy = FlakyProxy(settings.nats.host, settings.nats.port)
    proxy.outage(3600)
    through_proxy = settings.nats.model_copy(
        update={
            "port": proxy.port,
            "invalidation_subject": subject,
            "retry_initial_backoff_s": 0.05,
            "retry_max_backoff_s": 0.5,
        }
    )
    metrics = Metrics(CollectorRegistry())
    publisher = NatsInvalidationPublisher(through_proxy, metrics)
    keys = [CacheKey(CacheKind.PRODUCT, n) for n in range(5)]
    received: list[list[str]] = []

    async def on_message(message: Msg) -> None:
        received.append(orjson.loads(message.data)["keys"])

    token = settings.nats.token.get_secret_value() or None
    subscriber = await nats.connect(settings.nats.url, token=token, connect_timeout=5)
    await subscriber.subscribe(subject, cb=on_message)
    await subscriber.flush()
    await publisher.start()
    try:
        # NATS cannot be reached: submit returns at once, nothing goes out, failures count
        for n, key in enumerate(keys):
            started = time.monotonic()
            source = [SourceRange("product-updates", 0, n, n)]
            publisher.submit(eviction_message([key], source, None, datetime.now(UTC)))
            assert time.monotonic() - started < 0.05
        deadline = time.monotonic() + 20
        while publisher.failures < 3:
            assert time.monotonic() < deadline, "no failed attempts counted"
            await asyncio.sleep(0.05)
        assert publisher.pending == len(keys)
        assert publisher.published == 0
        assert not received
        failed = metrics.registry.get_sample_value(
            "bv_message_publish_failures_total",
            {"broker": "nats", "destination": subject, "outcome": "retried"},
        )
        assert failed is not None
        assert failed >= 3

        proxy.outage(0)  # NATS is back
        deadline = time.monotonic() + 20
        while len(received) < len(keys):
            assert time.monotonic() < deadline, f"only {received} arrived"
            await asyncio.sleep(0.05)
    finally:
        await publisher.stop()
        await subscriber.drain()
        proxy.close()
    # in order and none lost (a retried flush may repeat one; evicting twice is harmless)
    assert list(dict.fromkeys(tuple(k) for k in received)) == [(str(key),) for key in keys]
    assert publisher.pending == 0
    assert publisher.published >= len(keys)
    published = metrics.registry.get_sample_value(
        "bv_messages_published_total", {"broker": "nats", "destination": subject}
    )
    assert published == publisher.published
