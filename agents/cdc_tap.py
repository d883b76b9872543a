"""A live tally of CDC changes per source table and operation, as a Faust table.

The first, simplest agent: it proves the wiring (topics -> decode -> table) and gives
operators a cheap "is anything flowing?" view. Records that cannot be decoded are
counted under ``<topic>:undecodable`` rather than crashing the agent; dead-lettering them
belongs to the sinks that must not lose data (see agents of the medallion pipeline).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import faust

from config.errors import PermanentError

Decoder = Callable[[bytes], Mapping[str, Any]]
TABLE_NAME = "cdc-change-counts"


def change_key(topic: str, envelope: Mapping[str, Any]) -> str:
    """``<schema>.<table>:<op>`` from a Debezium envelope (topic when source is absent)."""
    source = envelope.get("source") or {}
    table = (
        f"{source['schema']}.{source['table']}"
        if "schema" in source and "table" in source
        else topic
    )
    return f"{table}:{envelope.get('op', '?')}"


def register_cdc_tap(
    app: faust.App, topics: list[str], decode: Decoder
) -> tuple[faust.types.AgentT, faust.types.TableT]:
    """Add the tap agent and its table to ``app``; returns both."""
    counts = app.Table(TABLE_NAME, default=int, partitions=app.conf.topic_partitions)
    source = app.topic(
        *topics, key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw"
    )

    async def tap(stream: faust.StreamT[bytes]) -> AsyncIterator[str]:
        async for event in stream.events():
            value = event.value
            if value is None:  # tombstone after a delete: no change of its own
                continue
            try:
                key = change_key(event.message.topic, decode(value))
            except PermanentError:
                key = f"{event.message.topic}:undecodable"
            counts[key] += 1
            yield key

    agent = app.agent(source, name="cdc-tap")(tap)
    return agent, counts
