"""Property tests: round trips for generated schemas and values; random bytes only ever
raise our typed (permanent) errors."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.errors import PermanentError
from serdes.avro import AvroCodec
from serdes.debezium import DebeziumAvroDecoder
from serdes.framing import Framing, IdKind, detect, encode, unframe
from serdes.json_envelope import DebeziumJsonDecoder
from serdes.logical_types import decimal_from_bytes
from tests.unit.fake_registry import StaticRegistry
from tests.unit.test_debezium_envelope import DATA

PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "string": st.text(),
    "bytes": st.binary(),
    "boolean": st.booleans(),
    "double": st.floats(allow_nan=False),
}


@st.composite
def schemas_and_records(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    kinds = draw(st.lists(st.sampled_from([*PRIMITIVES, "decimal", "nullable"]), max_size=8))
    fields: list[dict[str, Any]] = []
    record: dict[str, Any] = {}
    for index, kind in enumerate(kinds):
        name = f"f{index}"
        if kind == "decimal":
            scale = draw(st.integers(0, 12))
            fields.append(
                {
                    "name": name,
                    "type": {
                        "type": "bytes",
                        "logicalType": "decimal",
                        "precision": 38,
                        "scale": scale,
                    },
                }
            )
            unscaled = draw(st.integers(-(10**38) + 1, 10**38 - 1))
            record[name] = Decimal(unscaled).scaleb(-scale)
        elif kind == "nullable":
            fields.append({"name": name, "type": ["null", "long"], "default": None})
            record[name] = draw(st.none() | PRIMITIVES["long"])
        else:
            fields.append({"name": name, "type": kind})
            record[name] = draw(PRIMITIVES[kind])
    return {"type": "record", "name": "Generated", "fields": fields}, record


@given(schemas_and_records(), st.sampled_from([Framing.CONFLUENT, Framing.APICURIO_LEGACY]))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_encode_then_decode_round_trips(
    case: tuple[dict[str, Any], dict[str, Any]], framing: Framing
) -> None:
    schema, record = case
    codec = AvroCodec(StaticRegistry({7: schema}), framing)  # type: ignore[arg-type]
    data = codec.encode(7, record)
    assert codec.decode(data) == (7, record)


@given(st.integers(1, 2**63 - 1), st.binary(), st.sampled_from(list(Framing)))
def test_framing_round_trips_in_every_variant(
    schema_id: int, body: bytes, framing: Framing
) -> None:
    payload, headers = encode(
        schema_id if framing is Framing.APICURIO_HEADERS else (schema_id % 2**32 or 1),
        body,
        framing,
        id_kind=IdKind.GLOBAL,
    )
    framed = detect(payload, headers)
    expected_id = schema_id if framing is Framing.APICURIO_HEADERS else (schema_id % 2**32 or 1)
    assert (framed.schema_id, framed.body, framed.framing) == (expected_id, body, framing)
    if framing is Framing.APICURIO_LEGACY:  # ids of 2^32 and up need the framing named
        big, _ = encode(schema_id, body, framing)
        assert unframe(big, framing).schema_id == schema_id


@given(st.integers(-(2**200), 2**200), st.integers(0, 40))
def test_decimal_bytes_round_trip_exactly(unscaled: int, scale: int) -> None:
    data = unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)
    value = decimal_from_bytes(data, scale)
    assert value.as_tuple().exponent == -scale
    sign, digits, _ = value.as_tuple()
    magnitude = int("".join(map(str, digits)))
    assert (-magnitude if sign else magnitude) == unscaled


REAL_IDS = [int(k) for k in DATA["schemas"]]


@given(st.sampled_from(REAL_IDS), st.binary(max_size=300), st.binary(max_size=40))
@settings(max_examples=400)
def test_random_avro_bodies_raise_only_permanent_errors(
    schema_id: int, body: bytes, key_body: bytes
) -> None:
    registry = StaticRegistry({int(k): v for k, v in DATA["schemas"].items()})
    decoder = DebeziumAvroDecoder(AvroCodec(registry))  # type: ignore[arg-type]
    prefix = b"\x00" + schema_id.to_bytes(4, "big")
    for key, value in ((None, prefix + body), (prefix + key_body, prefix + body)):
        with contextlib.suppress(PermanentError):
            decoder.decode(key, value, None)


@given(st.binary(max_size=200), st.one_of(st.none(), st.binary(max_size=40)))
def test_random_bytes_raise_only_permanent_errors(value: bytes, key: bytes | None) -> None:
    registry = StaticRegistry({int(k): v for k, v in DATA["schemas"].items()})
    for decoder in (DebeziumAvroDecoder(AvroCodec(registry)), DebeziumJsonDecoder()):  # type: ignore[arg-type]
        with contextlib.suppress(PermanentError):
            decoder.decode(key, value, None)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_random_json_documents_raise_only_permanent_errors(document: Any) -> None:
    with contextlib.suppress(PermanentError):
        DebeziumJsonDecoder().decode(None, json.dumps(document).encode(), None)
