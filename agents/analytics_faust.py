"""The analytics as a Faust agent whose state lives in Faust tables (RocksDB + changelogs).

Eight tables (contributions, windows, orders, customer orders, items, products,
categories, features) back the ``AnalyticsState`` of ``tables.analytics``; values travel
through the ``bv-state`` codec (tagged JSON, never pickle). Every table write happens
inside the stream iteration, as Faust requires; the periodic work (close windows, age
orders out, flush) runs there too, driven by events and by Debezium heartbeats, which
arrive every 10 s even when the database is quiet. After a restart Faust restores the
tables from their changelogs before the agent runs; the first event then recomputes every
customer and re-publishes every window (version-guarded, so unchanged rows are refused).

Faust's consumer acks records an agent raised on and commits on its own schedule; this
is acceptable here only because every state update is idempotent by order id and every
output a versioned upsert (docs/decisions/0007-analytics-state-and-consumer.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, Protocol

import faust
from faust.serializers import codecs

from agents.analytics import Clock, analytics_topics, heartbeat_topic, utc_now
from config.errors import PermanentError
from config.settings import Settings
from serdes.debezium import ChangeEvent
from tables.analytics import AnalyticsCore, AnalyticsOutputs, AnalyticsState
from tables.features import CurrencyRates
from tables.state_codec import decode, encode

log = logging.getLogger("bitvelocity.analytics")
STATE_CODEC = "bv-state"
TABLE_NAMES = (
    "contributions",
    "windows",
    "orders",
    "customer_orders",
    "items",
    "products",
    "categories",
    "features",
)
#: topic, key bytes, value bytes -> a change, a heartbeat instant, or None (skip)
RecordDecoder = Callable[[str, bytes | None, bytes | None], ChangeEvent | datetime | None]


class OutputSink(Protocol):
    async def flush(self, outputs: AnalyticsOutputs) -> None: ...


class _StateCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return encode(obj)

    def _loads(self, s: bytes) -> Any:
        return decode(s)


def _register_codec() -> None:
    if STATE_CODEC not in codecs.codecs:
        codecs.register(STATE_CODEC, _StateCodec())


def analytics_tables(app: faust.App) -> dict[str, faust.types.TableT]:
    _register_codec()
    tables = {}
    for name in TABLE_NAMES:
        table: Any = app.Table(f"analytics-{name}", partitions=app.conf.topic_partitions)
        # Faust derives serializers from model types only; its store and changelog topic
        # are built lazily from these attributes, so setting them here is enough.
        table.key_serializer = STATE_CODEC
        table.value_serializer = STATE_CODEC
        tables[name] = table
    return tables


def register_analytics(
    app: faust.App,
    settings: Settings,
    *,
    rates: CurrencyRates,
    decode_record: RecordDecoder,
    sink: OutputSink,
    clock: Clock = utc_now,
) -> tuple[faust.types.AgentT, AnalyticsCore]:
    """Add the analytics agent and its tables to ``app``; returns the agent and the core."""
    tables = analytics_tables(app)
    core = AnalyticsCore(settings, rates, AnalyticsState(**tables))
    source = app.topic(
        *analytics_topics(settings),
        heartbeat_topic(settings),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    interval = settings.features.flush_interval.total_seconds()

    async def analytics(stream: faust.StreamT[bytes]) -> AsyncIterator[int]:
        recovered = False
        last_flush = time.monotonic()
        async for event in stream.events():
            if not recovered:
                core.recover()
                recovered = True
            message = event.message
            try:
                decoded = decode_record(message.topic, message.key, message.value)
            except PermanentError as exc:  # the medallion sink dead-letters the same record
                log.warning(
                    "analytics skipped %s[%d]@%d: %s",
                    message.topic,
                    message.partition,
                    message.offset,
                    exc,
                )
                decoded = None
            if isinstance(decoded, datetime):
                core.heartbeat(decoded)
            elif isinstance(decoded, ChangeEvent):
                if decoded.table == "orders":
                    core.watermarks.assign(message.partition)
                core.apply(message.partition, decoded)
            if time.monotonic() - last_flush >= interval:
                core.tick(clock())
                await sink.flush(core.drain())
                last_flush = time.monotonic()
            yield message.offset

    agent = app.agent(source, name="analytics")(analytics)
    return agent, core
