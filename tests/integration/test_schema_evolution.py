"""OrderEvent moves from v1 to v2 mid-stream: a v2 reader reads both; the registry refuses
an incompatible change with a message that says why and what to do."""

from __future__ import annotations

import contextlib
import json
import secrets
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from config.errors import SchemaNotFoundError, SchemaRejectedError
from config.settings import Settings
from serdes.avro import AvroCodec
from serdes.own_schemas import load, register_all, subjects
from serdes.registry import RegistryClient
from tests.integration.capture import delete_topics
from tests.kafka_io import create_topic, produce, read_all


def test_consumer_reads_v1_and_v2_order_events_from_one_topic(settings: Settings) -> None:
    run = secrets.token_hex(3)
    topic = f"bv-serdes-evolution-{run}"
    subject = f"{topic}-value"
    bootstrap = settings.kafka.bootstrap_servers
    base = {
        "customerId": 7,
        "status": "SHIPPED",
        "totalAmount": Decimal("-0.01"),
        "createdAt": datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        "version": 3,
    }
    audit = {"createdBy": "loadgen", "updatedBy": None, "updatedAt": None, "correlationId": "c-1"}
    create_topic(bootstrap, topic)
    try:
        with RegistryClient(settings.registry) as registry:
            codec = AvroCodec(registry)
            v1 = registry.register(subject, load("OrderEvent.v1").text, "BACKWARD")
            produce(bootstrap, topic, [(None, codec.encode(v1, {**base, "orderId": 1}))])
            v2 = registry.register(subject, load("OrderEvent").text, "BACKWARD")
            assert v2 != v1
            produce(
                bootstrap,
                topic,
                [
                    (
                        None,
                        codec.encode(
                            v2, {**base, "orderId": 2, "currency": "EUR", "auditInfo": audit}
                        ),
                    )
                ],
            )
            reader = load("OrderEvent").parsed
            with RegistryClient(settings.registry) as fresh:
                consumer_codec = AvroCodec(fresh)
                decoded = [
                    consumer_codec.decode(r.value or b"", r.headers, reader)
                    for r in read_all(bootstrap, topic, 2)
                ]
        assert decoded == [
            (v1, {**base, "orderId": 1, "currency": "USD", "auditInfo": None}),
            (v2, {**base, "orderId": 2, "currency": "EUR", "auditInfo": audit}),
        ]
    finally:
        delete_topics(bootstrap, topic)
        with (
            RegistryClient(settings.registry) as registry,
            contextlib.suppress(SchemaNotFoundError),
        ):
            registry.delete_subject(subject)


def test_incompatible_order_event_is_refused_with_a_clear_message(settings: Settings) -> None:
    subject = f"bv-serdes-evolution-{secrets.token_hex(3)}-value"
    breaking = json.loads(load("OrderEvent").text)
    breaking["fields"].append({"name": "warehouseId", "type": "long"})  # no default
    try:
        with RegistryClient(settings.registry) as registry:
            registry.register(subject, load("OrderEvent").text, "BACKWARD")
            with pytest.raises(SchemaRejectedError) as refused:
                registry.register(subject, json.dumps(breaking), "BACKWARD")
            assert registry.latest(subject).version == 1
        message = str(refused.value)
        assert subject in message
        assert "incompatible" in message
        assert "default" in message
    finally:
        with (
            RegistryClient(settings.registry) as registry,
            contextlib.suppress(SchemaNotFoundError),
        ):
            registry.delete_subject(subject)


def test_own_schemas_register_idempotently_with_backward_compatibility(
    settings: Settings,
) -> None:
    with RegistryClient(settings.registry) as registry:
        first = register_all(settings, registry)
        again = register_all(settings, registry)
        assert first == again
        assert set(first) == set(subjects(settings))
        for subject in first:
            assert registry.compatibility(subject) == "BACKWARD"
