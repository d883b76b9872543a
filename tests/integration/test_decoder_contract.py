"""Fresh connector output on the stack (REPLICA IDENTITY DEFAULT and FULL tables, TOAST, a
multi-table transaction, logical messages) decodes to what a downstream consumer needs, in Avro
through the registry and as JSON with the schema wrapper; the schemaless and ``"schema": null``
forms are the same payloads without or with an empty wrapper.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import orjson
import pytest

from admin.capture import remove_capture_outputs
from config.settings import Settings
from demo.decode_example import describe, read_decoded
from serdes.avro import AvroCodec
from serdes.debezium import DebeziumAvroDecoder
from serdes.json_envelope import DebeziumJsonDecoder
from serdes.registry import RegistryClient
from tests import decoder_contract
from tests.integration import decoder_sql
from tests.integration.capture import CaptureRun, RawRecord, capture

RECORDS = decoder_sql.TABLE_RECORDS + decoder_sql.MESSAGE_RECORDS + decoder_sql.TRANSACTION_RECORDS
JSON_WITH_SCHEMAS = {
    "key.converter.schemas.enable": "true",
    "value.converter.schemas.enable": "true",
}


T = TypeVar("T")
#: Everything the module creates is removed again, also when a test fails.
pytestmark = pytest.mark.usefixtures("no_leftovers")


def _capture(
    settings: Settings,
    converter: str,
    decode: Callable[[list[RawRecord]], T],
    while_topics_exist: Callable[[CaptureRun], None] | None = None,
) -> T:
    """Capture decoder_sql.py's writes, ``decode`` the records while the registry still has
    their schemas, then remove every topic and subject of the run."""
    extra = {"skipped.operations": "none"}
    if converter == "json":
        extra |= JSON_WITH_SCHEMAS
    run = CaptureRun(
        settings, converter="avro" if converter == "avro" else "json", extra_config=extra
    )
    try:
        records, _ = capture(
            run,
            decoder_sql.ddl(run.schema),
            list(decoder_sql.TABLES),
            decoder_sql.dml(run.schema),
            RECORDS,
            connector_topics=("transaction", "message"),
            while_topics_exist=while_topics_exist,
        )
        return decode(records)
    finally:
        remove_capture_outputs(settings, run.prefix)


@pytest.fixture(scope="module")
def example_lines() -> list[str]:
    """What the docs' example (demo/decode_example.py) printed over the Avro capture."""
    return []


@pytest.fixture(scope="module")
def avro_decoded(settings: Settings, example_lines: list[str]) -> decoder_contract.Decoded:
    def run_example(run: CaptureRun) -> None:
        for _, record in read_decoded(settings, run.prefix, max_records=RECORDS, timeout_s=30):
            example_lines.append(describe(record))

    def decode(records: list[RawRecord]) -> decoder_contract.Decoded:
        with RegistryClient(settings.registry) as registry:
            decoder = DebeziumAvroDecoder(AvroCodec(registry))
            return [(_suffix(r), decoder.decode_any(r.key, r.value, r.headers)) for r in records]

    return _capture(settings, "avro", decode, run_example)


@pytest.fixture(scope="module")
def json_records(settings: Settings) -> list[RawRecord]:
    return _capture(settings, "json", lambda records: records)


def _suffix(record: RawRecord) -> str:
    return record.topic.rsplit(".", 1)[-1]


def _rewrapped(value: bytes | None, form: str) -> bytes | None:
    """The schemas-on document as the other JSON forms: bare payload, or a null schema."""
    if value is None or form == "json_schemas":
        return value
    payload = orjson.loads(value)["payload"]
    return orjson.dumps(payload if form == "json" else {"schema": None, "payload": payload})


@pytest.mark.parametrize("check", decoder_contract.ALL_CHECKS, ids=lambda c: c.__name__)
def test_avro_records_tell_what_debezium_says(
    avro_decoded: decoder_contract.Decoded, check: Callable[[decoder_contract.Decoded], None]
) -> None:
    check(avro_decoded)


JSON_CASES = [
    (form, check)
    for form in ("json_schemas", "json", "json_null_schema")
    for check in (
        decoder_contract.ALL_CHECKS
        if form == "json_schemas"
        else decoder_contract.SCHEMALESS_CHECKS
    )
]


@pytest.mark.parametrize(
    ("form", "check"), JSON_CASES, ids=[f"{form}-{check.__name__}" for form, check in JSON_CASES]
)
def test_json_records_tell_what_debezium_says(
    json_records: list[RawRecord], form: str, check: Callable[[decoder_contract.Decoded], None]
) -> None:
    decoder = DebeziumJsonDecoder()
    decoded = [
        (
            _suffix(r),
            decoder.decode_any(_rewrapped(r.key, form), _rewrapped(r.value, form), r.headers),
        )
        for r in json_records
    ]
    check(decoded)


def test_the_documented_example_reads_every_record_of_the_connector(
    avro_decoded: decoder_contract.Decoded, example_lines: list[str]
) -> None:
    assert len(example_lines) == len(avro_decoded) == RECORDS
    assert not [line for line in example_lines if line.startswith("dead letter")]
    kinds = Counter(line.split(" ", 1)[0] for line in example_lines)
    assert kinds["BEGIN"] == kinds["END"] == decoder_sql.TRANSACTION_RECORDS // 2
    assert kinds["message"] == decoder_sql.MESSAGE_RECORDS
    assert any("changed=['note', 'qty']" in line for line in example_lines)
    assert any("before=key_only" in line for line in example_lines)
