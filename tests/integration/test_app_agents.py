"""A Faust-style agent on the real broker: batches in, offsets committed after, at least once.

The tap agent tallies a topic's changes; after a restart of the app its group resumes from
the committed offsets, so nothing is tallied twice and nothing is skipped.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from confluent_kafka.admin import AdminClient

from agents.cdc_tap import register_cdc_tap
from config.errors import PermanentError
from config.settings import Settings
from streams.app import App
from tests.kafka_io import create_topic, produce


def decode_json(value: bytes) -> Mapping[str, Any]:
    try:
        result: Mapping[str, Any] = json.loads(value)
    except ValueError as exc:
        raise PermanentError(f"not JSON: {exc}") from exc
    return result


def change(op: str) -> bytes:
    return json.dumps({"op": op, "source": {"schema": "public", "table": "orders"}}).encode()


async def tally_until(settings: Settings, topic: str, total: int) -> Counter[str]:
    """Run a fresh app with the tap until it counted ``total`` changes, then stop it."""
    app = App("test", settings)
    _, counts = register_cdc_tap(app, [topic], decode_json)
    stop = asyncio.Event()
    running = asyncio.create_task(app.run(stop))
    deadline = time.monotonic() + 60
    while sum(counts.values()) < total:
        assert time.monotonic() < deadline, f"tallied {dict(counts)}, expected {total}"
        assert not running.done(), running
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # a second chance for a record that would be tallied twice
    stop.set()
    await asyncio.wait_for(running, timeout=30)
    return counts


async def test_a_restarted_agent_resumes_after_its_committed_offsets(settings: Settings) -> None:
    bootstrap = settings.kafka.bootstrap_servers
    topic = f"bv-test-tap-{secrets.token_hex(3)}"
    group = f"bv-test-app-{secrets.token_hex(3)}"
    own = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"consumer_group": group})}
    )
    create_topic(bootstrap, topic, partitions=2)
    try:
        produce(bootstrap, topic, [(b"1", change("c")), (b"2", change("c")), (b"3", b"\xff")])
        first = await tally_until(own, topic, 3)
        assert first == {"public.orders:c": 2, f"{topic}:undecodable": 1}
        produce(bootstrap, topic, [(b"1", change("u")), (b"4", None)])  # a tombstone too
        second = await tally_until(own, topic, 1)
        assert second == {"public.orders:u": 1}
    finally:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.delete_topics([topic]).values():
            future.result(timeout=15)
        for future in admin.delete_consumer_groups([f"{group}-cdc-tap"]).values():
            future.result(timeout=15)
