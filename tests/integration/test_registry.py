"""The registry speaks the Confluent API: register, fetch by id, enforce BACKWARD compatibility."""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator

import pytest

from config.errors import SchemaNotFoundError, SchemaRejectedError
from config.settings import Settings
from serdes.avro import AvroCodec
from serdes.registry import RegistryClient

V1 = {
    "type": "record",
    "name": "HourlyRevenue",
    "namespace": "bv.test",
    "fields": [{"name": "currency", "type": "string"}, {"name": "orders", "type": "long"}],
}
# Adding a field with a default is BACKWARD compatible; adding one without is not.
V2_COMPATIBLE = {**V1, "fields": [*V1["fields"], {"name": "note", "type": "string", "default": ""}]}
V2_INCOMPATIBLE = {**V1, "fields": [*V1["fields"], {"name": "required", "type": "long"}]}


@pytest.fixture
def registry(settings: Settings) -> Iterator[RegistryClient]:
    with RegistryClient(settings.registry) as client:
        yield client


@pytest.fixture
def subject(registry: RegistryClient) -> Iterator[str]:
    name = f"bv-test-{secrets.token_hex(4)}-value"
    yield name
    with contextlib.suppress(SchemaNotFoundError):
        registry.delete_subject(name)


def test_registered_schema_is_fetched_back_by_id(
    settings: Settings, registry: RegistryClient, subject: str
) -> None:
    schema_id = registry.register(subject, json.dumps(V1))
    with RegistryClient(settings.registry) as fresh:  # empty cache: really asks the registry
        fetched = json.loads(fresh.schema_by_id(schema_id))
    assert fetched["name"] == "HourlyRevenue"
    assert [f["name"] for f in fetched["fields"]] == ["currency", "orders"]
    assert registry.latest(subject).schema_id == schema_id


def test_registering_the_same_schema_twice_returns_the_same_id(
    registry: RegistryClient, subject: str
) -> None:
    assert registry.register(subject, json.dumps(V1)) == registry.register(subject, json.dumps(V1))


def test_backward_compatibility_is_enforced(registry: RegistryClient, subject: str) -> None:
    registry.register(subject, json.dumps(V1))
    registry.set_compatibility(subject, "BACKWARD")
    assert registry.compatibility(subject) == "BACKWARD"
    registry.register(subject, json.dumps(V2_COMPATIBLE))
    with pytest.raises(SchemaRejectedError):
        registry.register(subject, json.dumps(V2_INCOMPATIBLE))
    assert registry.latest(subject).version == 2


def test_unknown_schema_id_is_a_permanent_not_found(registry: RegistryClient) -> None:
    with pytest.raises(SchemaNotFoundError):
        registry.schema_by_id(2_000_000_000)


def test_avro_codec_round_trips_through_the_registry(
    registry: RegistryClient, subject: str
) -> None:
    schema_id = registry.register(subject, json.dumps(V1))
    codec = AvroCodec(registry)
    data = codec.encode(schema_id, {"currency": "EUR", "orders": 3})
    assert data[0] == 0
    assert codec.decode(data) == (schema_id, {"currency": "EUR", "orders": 3})
