"""Real Debezium 3.6.1 output (tests/integration/decoder_sql.py, captured from the stack once per
converter, in data/) decodes to what a downstream consumer needs: image completeness, changed
columns, transaction records and message flags, in Avro and in every JSON form.

The live counterpart is tests/integration/test_decoder_contract.py; both run the checks of
tests/decoder_contract.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from config.errors import EnvelopeError, PermanentError
from serdes.avro import AvroCodec
from serdes.consumer_step import decode_or_dead_letter
from serdes.dead_letters import ERROR_CLASS, DeadLetter, RecordOrigin
from serdes.debezium import DebeziumAvroDecoder
from serdes.json_envelope import DebeziumJsonDecoder
from tests import decoder_contract
from tests.unit.fake_registry import StaticRegistry

DATA = json.loads((Path(__file__).parent / "data" / "debezium_decoder_captured.json").read_text())
Raw = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]


def _raw(form: str) -> list[Raw]:
    """(topic suffix, key, value, headers) of one stored form."""
    source = "json_schemas" if form == "json_null_schema" else form
    out: list[Raw] = []
    for record in DATA[source]:
        topic = record["topic"].rsplit(".", 1)[-1]
        headers = [(k, v.encode()) for k, v in record["headers"]]
        if form == "avro":
            key, value = (bytes.fromhex(record[s]) if record[s] else None for s in ("key", "value"))
        else:
            key, value = (record[s].encode() if record[s] else None for s in ("key", "value"))
        if form == "json_null_schema" and value is not None:
            # the same payload as some pipelines hand it on: {"schema": null, "payload": ...}
            value = orjson.dumps({"schema": None, "payload": orjson.loads(value)["payload"]})
        out.append((topic, key, value, headers))
    return out


def _avro() -> DebeziumAvroDecoder:
    registry = StaticRegistry({int(k): v for k, v in DATA["schemas"].items()})
    return DebeziumAvroDecoder(AvroCodec(registry))  # type: ignore[arg-type]


def _decoder(form: str) -> DebeziumAvroDecoder | DebeziumJsonDecoder:
    return _avro() if form == "avro" else DebeziumJsonDecoder()


FORMS = ("avro", "json", "json_schemas", "json_null_schema")


CASES = [
    (form, check)
    for form in FORMS
    for check in (
        decoder_contract.ALL_CHECKS
        if form in ("avro", "json_schemas")
        else decoder_contract.SCHEMALESS_CHECKS
    )
]


@pytest.mark.parametrize(
    ("form", "check"), CASES, ids=[f"{form}-{check.__name__}" for form, check in CASES]
)
def test_captured_records_tell_what_debezium_says(
    form: str, check: Callable[[decoder_contract.Decoded], None]
) -> None:
    decoder = _decoder(form)
    decoded = [(t, decoder.decode_any(k, v, h)) for t, k, v, h in _raw(form)]
    check(decoded)


@pytest.mark.parametrize("form", FORMS)
def test_a_transaction_record_fed_to_decode_is_a_dead_letter_naming_decode_transaction(
    form: str,
) -> None:
    decoder = _decoder(form)
    _, key, value, headers = next(r for r in _raw(form) if r[0] == "transaction")
    with pytest.raises(EnvelopeError, match="decode_transaction"):
        decoder.decode(key, value, headers)
    origin = RecordOrigin("bitvelocity.transaction", 0, 7, key, value, tuple(headers))
    letter = decode_or_dead_letter(decoder.decode, origin)
    assert isinstance(letter, DeadLetter)
    assert (ERROR_CLASS, b"EnvelopeError") in letter.headers
    assert letter.value == value
    # and through decode_transaction it is the BEGIN or END it is
    assert decoder.decode_transaction(key, value, headers).id


@pytest.mark.parametrize("form", FORMS)
def test_decode_transaction_refuses_change_events_and_null_values(form: str) -> None:
    decoder = _decoder(form)
    _, key, value, headers = next(r for r in _raw(form) if r[0] == "keyed")
    with pytest.raises(EnvelopeError, match="not a transaction metadata record"):
        decoder.decode_transaction(key, value, headers)
    with pytest.raises(EnvelopeError, match="null"):
        decoder.decode_transaction(key, None, headers)


def test_truncated_or_altered_transaction_records_are_permanent_errors() -> None:
    avro = _avro()
    _, key, value, headers = next(r for r in _raw("avro") if r[0] == "transaction")
    assert value is not None
    with pytest.raises(PermanentError):
        avro.decode_any(key, value[:-2], headers)
    payload: dict[str, Any] = orjson.loads(
        next(r for r in _raw("json") if r[0] == "transaction")[2] or b""
    )
    json_decoder = DebeziumJsonDecoder()
    for broken in (
        {**payload, "status": "COMMIT"},
        {**payload, "ts_ms": "soon"},
        {**payload, "id": 5},
    ):
        with pytest.raises(EnvelopeError):
            json_decoder.decode_any(None, orjson.dumps(broken))
