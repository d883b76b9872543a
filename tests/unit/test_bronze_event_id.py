"""The bronze event id is the RFC 4122 version-5 UUID of "<topic>/<partition>/<offset>"."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from sinks.postgres.batch import EVENT_ID_NAMESPACE, event_id


@given(
    topic=st.text(min_size=1, max_size=60),
    partition=st.integers(min_value=0, max_value=10_000),
    offset=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_the_event_id_is_uuid5_of_topic_partition_and_offset(
    topic: str, partition: int, offset: int
) -> None:
    expected = uuid.uuid5(EVENT_ID_NAMESPACE, f"{topic}/{partition}/{offset}")
    got = event_id(topic, partition, offset)
    assert got == expected
    assert str(got) == str(expected)
    assert got.version == 5
    assert got.variant == uuid.RFC_4122


def test_a_known_id_never_changes() -> None:
    """Stored bronze rows carry these ids: a replay must produce the very same one."""
    assert (
        str(event_id("bitvelocity.public.orders", 2, 41)) == "d157aede-81fc-5317-8dd0-ead4aaa79cc8"
    )
