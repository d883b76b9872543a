"""Registry framing: round trips for every id width, and clear refusals of foreign bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.errors import FramingError, PermanentError
from serdes.framing import Framing, frame, unframe


@given(schema_id=st.integers(0, 2**32 - 1), body=st.binary(max_size=256))
def test_confluent_frame_round_trips(schema_id: int, body: bytes) -> None:
    framed = frame(schema_id, body)
    assert framed[:5] == b"\x00" + struct.pack(">I", schema_id)
    result = unframe(framed)
    assert (result.schema_id, result.body, result.framing) == (schema_id, body, Framing.CONFLUENT)


@given(schema_id=st.integers(0, 2**64 - 1), body=st.binary(max_size=64))
def test_apicurio_legacy_frame_round_trips_with_eight_byte_ids(schema_id: int, body: bytes) -> None:
    framed = frame(schema_id, body, Framing.APICURIO_LEGACY)
    assert len(framed) == 9 + len(body)
    assert unframe(framed, Framing.APICURIO_LEGACY).schema_id == schema_id


def test_known_bytes_decode_to_known_id() -> None:
    # Hand-built: magic 0, id 0x0000012c = 300, body "hi".
    assert unframe(b"\x00\x00\x00\x01\x2chi").schema_id == 300


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "shorter than"),
        (b"\x00\x00\x01", "shorter than"),
        (b'{"op":"c"}', "not the magic byte"),
        (None, "tombstone"),
    ],
)
def test_unframe_refuses_foreign_bytes_with_a_permanent_error(
    data: bytes | None, reason: str
) -> None:
    with pytest.raises(FramingError, match=reason) as caught:
        unframe(data)
    assert isinstance(caught.value, PermanentError)


def test_frame_refuses_an_id_wider_than_the_framing() -> None:
    with pytest.raises(FramingError, match="does not fit"):
        frame(2**32, b"", Framing.CONFLUENT)
