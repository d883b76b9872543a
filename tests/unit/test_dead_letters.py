"""Dead letters keep the origin bytes and carry the DESIGN.md section 4 headers; the consumer
step dead-letters permanent errors and retries transient ones on the same record."""

from __future__ import annotations

import pytest

from config.errors import RegistryUnavailableError, SchemaNotFoundError
from records.change_events import ChangeEvent
from serdes.avro import AvroCodec
from serdes.consumer_step import Backoff, decode_with_retry
from serdes.dead_letters import DeadLetter, RecordOrigin, dead_letter, header
from serdes.debezium import DebeziumAvroDecoder
from tests.unit.fake_registry import StaticRegistry
from tests.unit.test_debezium_envelope import DATA

ORIGIN = RecordOrigin(
    "shop.public.orders", 2, 41, b"\x00key", b"\x00\x00\x00\x00\x07garbage", (("trace", b"t-1"),)
)


def test_dead_letter_keeps_bytes_and_names_error_origin_and_schema() -> None:
    letter = dead_letter(ORIGIN, SchemaNotFoundError("registry has no schema id 7"), 7)
    assert letter.topic == "shop.public.orders.dlq"
    assert (letter.key, letter.value) == (ORIGIN.key, ORIGIN.value)
    assert dict(letter.headers) == {
        "trace": b"t-1",
        "bv.error.class": b"SchemaNotFoundError",
        "bv.error.message": b"registry has no schema id 7",
        "bv.origin.topic": b"shop.public.orders",
        "bv.origin.partition": b"2",
        "bv.origin.offset": b"41",
        "bv.schema.id": b"7",
    }
    assert letter.reason == "SchemaNotFoundError"
    assert header(letter.headers, "bv.origin.offset") == "41"


def test_schema_id_header_is_absent_when_unknown() -> None:
    letter = dead_letter(ORIGIN, SchemaNotFoundError("x"))
    assert "bv.schema.id" not in dict(letter.headers)


def _real_value() -> bytes:
    record = next(r for r in DATA["records"] if r["topic"] == "all_types" and r["offset"] == 0)
    return bytes.fromhex(record["value"])


def test_transient_registry_failure_is_retried_on_the_same_record_until_it_decodes() -> None:
    registry = StaticRegistry({int(k): v for k, v in DATA["schemas"].items()})
    registry.down = True
    decoder = DebeziumAvroDecoder(AvroCodec(registry))  # type: ignore[arg-type]
    delays: list[float] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 3:
            registry.down = False

    origin = RecordOrigin("t", 0, 0, None, _real_value())
    result = decode_with_retry(decoder.decode, origin, backoff=Backoff(0.1, 0.3), sleep=sleep)
    assert isinstance(result, ChangeEvent)
    assert delays == [0.1, 0.2, 0.3]


def test_transient_failure_past_the_deadline_is_raised_not_dead_lettered() -> None:
    registry = StaticRegistry({})
    registry.down = True
    decoder = DebeziumAvroDecoder(AvroCodec(registry))  # type: ignore[arg-type]
    with pytest.raises(RegistryUnavailableError):
        decode_with_retry(decoder.decode, RecordOrigin("t", 0, 0, None, _real_value()), deadline=0)


def test_unknown_schema_id_and_garbage_become_dead_letters() -> None:
    decoder = DebeziumAvroDecoder(AvroCodec(StaticRegistry({})))  # type: ignore[arg-type]
    unknown = decode_with_retry(decoder.decode, RecordOrigin("t", 0, 5, None, _real_value()))
    garbage = decode_with_retry(decoder.decode, RecordOrigin("t", 0, 6, None, b"{not avro"))
    assert isinstance(unknown, DeadLetter)
    assert header(unknown.headers, "bv.schema.id") == "47"
    assert isinstance(garbage, DeadLetter)
    assert header(garbage.headers, "bv.error.class") == "FramingError"
