"""Registry outage, unknown schema ids and garbage bytes never stop or lose the stream."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlparse

import pytest
from prometheus_client import REGISTRY

from config.errors import SchemaNotFoundError
from config.settings import RegistrySettings, Settings
from serdes.avro import AvroCodec
from serdes.dead_letters import header
from serdes.framing import Headers
from serdes.own_schemas import load
from serdes.registry import RegistryClient
from sinks.kafka.dead_letters import DeadLetterPublisher
from tests.faults.tcp_proxy import FlakyProxy
from tests.integration.capture import delete_topics
from tests.kafka_io import create_topic, produce, read_all, run_pipeline


def order(i: int) -> dict[str, Any]:
    return {
        "orderId": i,
        "customerId": 7,
        "status": "CONFIRMED",
        "totalAmount": Decimal("19.99"),
        "createdAt": datetime(2026, 1, 1, tzinfo=UTC),
        "version": 1,
    }


@pytest.fixture
def names(settings: Settings) -> Iterator[tuple[str, str]]:
    run = secrets.token_hex(3)
    topic = f"bv-serdes-fault-{run}"
    subject = f"{topic}-value"
    create_topic(settings.kafka.bootstrap_servers, topic)
    yield topic, subject
    delete_topics(settings.kafka.bootstrap_servers, topic)
    with RegistryClient(settings.registry) as registry, contextlib.suppress(SchemaNotFoundError):
        registry.delete_subject(subject)


def test_registry_down_for_10_s_mid_stream_loses_and_dead_letters_nothing(
    settings: Settings, names: tuple[str, str]
) -> None:
    topic, subject = names
    bootstrap = settings.kafka.bootstrap_servers
    with RegistryClient(settings.registry) as registry:
        v1 = registry.register(subject, load("OrderEvent.v1").text, "BACKWARD")
        v2 = registry.register(subject, load("OrderEvent").text, "BACKWARD")
        writer = AvroCodec(registry)
        first = [writer.encode(v1, order(i)) for i in range(10)]
        second = [writer.encode(v2, {**order(i), "currency": "EUR"}) for i in range(10, 20)]
    produce(bootstrap, topic, [(None, v) for v in first + second])

    upstream = urlparse(settings.registry.url)
    proxy = FlakyProxy(upstream.hostname or "127.0.0.1", upstream.port or 80)
    flaky = RegistrySettings(
        url=f"http://127.0.0.1:{proxy.port}",
        timeout_s=2,
        max_retries=2,
        backoff_initial_s=0.1,
        backoff_max_s=0.5,
    )
    reader = load("OrderEvent").parsed
    outage_started: list[float] = []

    def before_each(offset: int) -> None:
        if offset == 10:  # the first record needing the (not yet cached) v2 schema
            proxy.outage(10)
            outage_started.append(time.monotonic())

    try:
        with RegistryClient(flaky) as registry, DeadLetterPublisher(bootstrap) as dlq:
            codec = AvroCodec(registry)

            def decode(_k: bytes | None, value: bytes | None, headers: Headers | None) -> Any:
                assert value is not None
                return codec.decode(value, headers, reader)[1]

            run = run_pipeline(
                bootstrap, topic, decode, dlq, 20, timeout_s=90, before_each=before_each
            )
            finished = time.monotonic()
    finally:
        proxy.close()
    assert run.dead == []
    assert [offset for offset, _ in run.decoded] == list(range(20))
    assert [r["orderId"] for _, r in run.decoded] == list(range(20))  # type: ignore[index]
    assert [r["currency"] for _, r in run.decoded] == ["USD"] * 10 + ["EUR"] * 10  # type: ignore[index]
    assert run.retries >= 1
    assert proxy.refused >= 1
    assert finished - outage_started[0] >= 10  # it really waited the outage out


def _dlq_count(topic: str, reason: str) -> float:
    return (
        REGISTRY.get_sample_value("bv_dlq_records_total", {"topic": topic, "reason": reason}) or 0
    )


def test_unknown_schema_id_and_garbage_are_dead_lettered_and_the_stream_continues(
    settings: Settings, names: tuple[str, str]
) -> None:
    topic, subject = names
    bootstrap = settings.kafka.bootstrap_servers
    with RegistryClient(settings.registry) as registry:
        schema_id = registry.register(subject, load("OrderEvent").text, "BACKWARD")
        codec = AvroCodec(registry)
        good = [codec.encode(schema_id, {**order(i), "currency": "EUR"}) for i in range(3)]
    unknown = b"\x00" + (2_000_000_000).to_bytes(4, "big") + good[0][5:]
    garbage = b"\xde\xad\xbe\xef not even framed"
    values = [good[0], unknown, good[1], garbage, good[2]]
    produce(bootstrap, topic, [(b"k%d" % i, v) for i, v in enumerate(values)])
    before = (_dlq_count(topic, "SchemaNotFoundError"), _dlq_count(topic, "FramingError"))

    try:
        with RegistryClient(settings.registry) as registry, DeadLetterPublisher(bootstrap) as dlq:
            codec = AvroCodec(registry)

            def decode(_k: bytes | None, value: bytes | None, headers: Headers | None) -> Any:
                assert value is not None
                return codec.decode(value, headers)[1]

            run = run_pipeline(bootstrap, topic, decode, dlq, 5)
        assert [offset for offset, _ in run.decoded] == [0, 2, 4]
        letters = read_all(bootstrap, f"{topic}.dlq", 2)
        assert [(lt.key, lt.value) for lt in letters] == [(b"k1", unknown), (b"k3", garbage)]
        first, second = letters
        assert header(first.headers, "bv.error.class") == "SchemaNotFoundError"
        assert header(first.headers, "bv.schema.id") == "2000000000"
        assert header(first.headers, "bv.origin.topic") == topic
        assert header(first.headers, "bv.origin.partition") == "0"
        assert header(first.headers, "bv.origin.offset") == "1"
        assert "2000000000" in (header(first.headers, "bv.error.message") or "")
        assert header(second.headers, "bv.error.class") == "FramingError"
        assert header(second.headers, "bv.schema.id") is None
        assert header(second.headers, "bv.origin.offset") == "3"
        after = (_dlq_count(topic, "SchemaNotFoundError"), _dlq_count(topic, "FramingError"))
        assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    finally:
        delete_topics(bootstrap, f"{topic}.dlq")
