"""PostgreSQL -> Debezium -> Kafka -> decoded events, through the registry (Avro) and as JSON."""

from __future__ import annotations

from decimal import Decimal

import pytest

from config.settings import Settings
from demo.smoke import EXPECTED_OPS, SMOKE_SCHEMA, SmokeChange, run_smoke
from serdes.registry import RegistryClient
from sinks.postgres.connection import connect

#: Everything the module creates is removed again, also when a test fails.
pytestmark = pytest.mark.usefixtures("no_leftovers")


@pytest.fixture(scope="module")
def avro_changes(settings: Settings) -> list[SmokeChange]:
    return run_smoke(settings, lambda _: None, converter="avro")


def test_every_write_arrives_once_in_commit_order(avro_changes: list[SmokeChange]) -> None:
    assert tuple(change.op for change in avro_changes) == EXPECTED_OPS
    assert [change.key for change in avro_changes] == [
        {"id": 1},
        {"id": 2},
        {"id": 3},
        {"id": 2},
        {"id": 3},
    ]


def test_avro_decimals_decode_exactly_and_updates_carry_before_images(
    avro_changes: list[SmokeChange],
) -> None:
    first, _, _, update, delete = avro_changes
    assert first.after["price"] == Decimal("49.90")
    assert isinstance(first.after["price"], Decimal)
    assert update.before["price"] == Decimal("19.99")
    assert update.after["price"] == Decimal("17.49")
    assert delete.after is None
    assert delete.before["name"] == "cable"


def test_the_writer_schema_id_resolves_in_the_registry(
    settings: Settings, avro_changes: list[SmokeChange]
) -> None:
    schema_id = avro_changes[0].schema_id
    assert schema_id is not None
    with RegistryClient(settings.registry) as registry:
        schema = registry.schema_by_id(schema_id)
    assert '"Envelope"' in schema
    assert "price" in schema


def test_json_profile_produces_the_same_changes(settings: Settings) -> None:
    changes = run_smoke(settings, lambda _: None, converter="json")
    assert tuple(change.op for change in changes) == EXPECTED_OPS
    # With decimal.handling.mode=precise the JSON converter writes decimals as base64
    # bytes; the point here is only that the JSON path runs end to end.
    assert changes[0].after is not None
    assert changes[0].after["name"] == "keyboard"


async def test_smoke_runs_leave_no_replication_slot_behind(
    settings: Settings, avro_changes: list[SmokeChange]
) -> None:
    connection = await connect(settings.postgres)
    try:
        slots = await connection.fetchval(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'bv_smoke_%'"
        )
        tables = await connection.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", SMOKE_SCHEMA
        )
    finally:
        await connection.close()
    assert slots == 0
    assert tables == 0
