"""An isolated analytics pipeline for a test, and the checks I4/I5 judge it by.

``analytics_environment`` is a medallion pipeline (``sink_env``) whose derived outputs
(topics, changelog, Redis prefix) are named after the run, so tests never share them.
The checks compare ``gold.*`` with the SQL oracle (``analytics_oracle``) and Redis with
PostgreSQL; they read plain SQL and Redis, never the pipeline's own code paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from agents.analytics import AnalyticsRunner, analytics_topics
from bench.pipeline_env import analytics_outputs
from chaos.expectations import expected_late_orders
from chaos.oracle import read_late_events
from config.settings import Settings
from sinks.postgres.connection import connect
from sinks.redis.feature_store import RedisFeatureStore, feature_fields
from tables.features import CustomerFeatures, FeatureValues
from tests.integration.analytics_oracle import (
    FEATURE_COLUMNS,
    expected_features,
    expected_hourly,
)
from tests.integration.sink_env import SinkEnv, high_watermarks, sink_environment


@contextlib.contextmanager
def analytics_environment(settings: Settings) -> Iterator[SinkEnv]:
    with sink_environment(settings) as pipeline, analytics_outputs(pipeline) as env:
        yield env


def analytics_worker_env(env: SinkEnv, *, state_dir: Path) -> dict[str, str]:
    """Environment of a `bitvelocity worker --agents analytics` subprocess on ``env`` (its
    web port and token are the process's: ``bench.worker_process``)."""
    topics = env.settings.topics
    return {
        **env.worker_env(),  # and the names with_analytics_outputs gave:
        "BV_TOPICS__HOURLY_REVENUE": topics.hourly_revenue,
        "BV_TOPICS__CUSTOMER_FEATURES": topics.customer_features,
        "BV_TOPICS__LATE_EVENTS": topics.late_events,
        "BV_TOPICS__ANALYTICS_STATE": topics.analytics_state,
        "BV_FEATURES__REDIS_PREFIX": env.settings.features.redis_prefix,
        "BV_FEATURES__IDLE_PARTITION_AFTER": "PT1S",
        "BV_FEATURES__STATE_DIR": str(state_dir),
    }


async def gold_rows(settings: Settings) -> tuple[list[tuple], list[tuple]]:
    """``gold.hourly_revenue`` and ``gold.customer_features``, every column, ordered."""
    connection = await connect(settings.postgres)
    try:
        hourly = await connection.fetch(
            "SELECT window_start, currency, revenue, order_count, avg_order_value, is_final,"
            " version FROM gold.hourly_revenue ORDER BY 1, 2"
        )
        features = await connection.fetch(
            "SELECT * FROM gold.customer_features ORDER BY customer_id"
        )
        return [tuple(r) for r in hourly], [tuple(r) for r in features]
    finally:
        await connection.close()


async def quiescent(runner: AnalyticsRunner, env: SinkEnv, timeout_s: float) -> None:
    """Until every analytics topic is read to its high watermark twice in a row, 1 s apart."""
    wanted = set(analytics_topics(env.settings))
    deadline = time.monotonic() + timeout_s
    previous: dict[tuple[str, int], int] | None = None
    marks: dict[tuple[str, int], int] = {}
    while time.monotonic() < deadline:
        marks = {k: v for k, v in high_watermarks(env).items() if k[0] in wanted and v > 0}
        done = (
            bool(marks)
            and not runner.recovering
            and all(runner.positions.get(k, 0) >= v for k, v in marks.items())
        )
        if done and marks == previous:
            return
        previous = marks if done else None
        await asyncio.sleep(1.0)
    raise AssertionError(f"analytics did not catch up: {runner.positions} vs {marks}")


async def gold_differences(
    settings: Settings, as_of: datetime, *, min_windows: int = 50, settled: bool = True
) -> list[str]:
    """How gold differs from the SQL oracle (I4); empty when equal to the cent.

    Hourly: every window, each order as it stood before its window left retention (the
    changes after it are late events: ``late_differences``; ``settled=False``: the current
    rows, right while nothing is late, and after a TRUNCATE, which the audit trail does not
    see as deletes). Features: as of ``as_of``;
    customers the oracle does not know (no bearing order left) must have none.
    """
    size, retention = settings.windows.hourly_revenue_size, settings.windows.retention
    problems: list[str] = []
    connection = await connect(settings.postgres)
    try:
        expected = await expected_hourly(connection, retention if settled else None, size)
        gold = {
            (r["window_start"], r["currency"]): (
                r["revenue"],
                r["order_count"],
                r["avg_order_value"],
            )
            for r in await connection.fetch("SELECT * FROM gold.hourly_revenue")
        }
        nonzero = {k: v for k, v in gold.items() if v[1] > 0}
        for key in sorted(expected.keys() | nonzero.keys()):
            if expected.get(key) != nonzero.get(key):
                problems.append(f"window {key}: gold {nonzero.get(key)} != {expected.get(key)}")
        for key, (revenue, count, _) in sorted(gold.items()):
            if count == 0 and revenue != 0:  # every order retracted: nothing may remain
                problems.append(f"window {key}: no orders but revenue {revenue}")
        features = await expected_features(connection, as_of)
        rows = await connection.fetch("SELECT * FROM gold.customer_features")
        stored = {r["customer_id"]: tuple(r[c] for c in FEATURE_COLUMNS) for r in rows}
        for customer_id, values in features.items():
            if stored.get(customer_id) != values:
                problems.append(f"customer {customer_id}: {stored.get(customer_id)} != {values}")
        for customer_id in stored.keys() - features.keys():
            if stored[customer_id][4] != 0:  # lifetime_order_count
                problems.append(f"customer {customer_id}: in gold, unknown to the oracle")
        if len(expected) < min_windows or len(features) < 10:
            problems.append(f"too little: {len(expected)} windows, {len(features)} customers")
        return problems
    finally:
        await connection.close()


async def late_differences(settings: Settings) -> list[str]:
    """Orders the SQL oracle finds changed beyond retention that ``late-events`` lacks."""
    size, retention = settings.windows.hourly_revenue_size, settings.windows.retention
    connection = await connect(settings.postgres)
    try:
        wanted = await expected_late_orders(connection, retention, size)
    finally:
        await connection.close()
    named, _ = await asyncio.to_thread(
        read_late_events, settings.kafka.bootstrap_servers, settings.topics.late_events
    )
    return [
        f"order {o} (window {w.isoformat()} {c}) not on late-events"
        for o, w, c in sorted(wanted - named)
    ]


async def redis_differences(settings: Settings) -> list[str]:
    """How the Redis feature store differs from ``gold.customer_features`` (I5)."""
    problems: list[str] = []
    connection = await connect(settings.postgres)
    try:
        rows = await connection.fetch("SELECT * FROM gold.customer_features")
    finally:
        await connection.close()
    prefix = settings.features.redis_prefix
    async with RedisFeatureStore(settings.redis, prefix=prefix) as store:
        for row in rows:
            values = FeatureValues(*(row[c] for c in FEATURE_COLUMNS))
            features = CustomerFeatures(
                row["customer_id"],
                values,
                row["features_updated_at"],
                row["feature_version"],
                row["as_of"],
            )
            cached = await store.read(row["customer_id"])
            expected = {
                **feature_fields(features),
                "_version": str(row["feature_version"]),
                "_ts": str(int(row["as_of"].timestamp() * 1000)),
            }
            if cached != expected:
                problems.append(f"customer {row['customer_id']}: redis {cached} != {expected}")
        keys = await store.keys()
        if len(keys) != len(rows):
            problems.append(f"{len(keys)} Redis hashes for {len(rows)} gold rows")
    return problems
