"""A live tally of CDC changes per source table and operation.

The first, simplest agent: it proves the wiring (topics -> decode -> tally) and gives
operators a cheap "is anything flowing?" view. Records that cannot be decoded are
counted under ``<topic>:undecodable`` rather than crashing the agent; dead-lettering them
belongs to the sinks that must not lose data (see agents of the medallion pipeline).
The tally is in memory: a restarted tap counts from where its group's offsets stand.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from config.errors import PermanentError
from streams.app import Agent, App, Record

Decoder = Callable[[bytes], Mapping[str, Any]]


def change_key(topic: str, envelope: Mapping[str, Any]) -> str:
    """``<schema>.<table>:<op>`` from a Debezium envelope (topic when source is absent)."""
    source = envelope.get("source") or {}
    table = (
        f"{source['schema']}.{source['table']}"
        if "schema" in source and "table" in source
        else topic
    )
    return f"{table}:{envelope.get('op', '?')}"


def register_cdc_tap(app: App, topics: list[str], decode: Decoder) -> tuple[Agent, Counter[str]]:
    """Add the tap agent to ``app``; returns it and its tally."""
    counts: Counter[str] = Counter()

    @app.agent(app.topic(*topics), name="cdc-tap")
    async def tap(batch: list[Record]) -> None:
        for record in batch:
            if record.value is None:  # tombstone after a delete: no change of its own
                continue
            try:
                key = change_key(record.topic, decode(record.value))
            except PermanentError:
                key = f"{record.topic}:undecodable"
            counts[key] += 1

    return tap, counts
