"""Late events on every path (issue 22): a first start on topics that already hold orders
beyond retention, then restarts with the state folder deleted and with all state lost.

The windows are four days long and the load runs in two halves; the retention is set so
that one window's edge (end plus retention) falls between them: the load holds orders
older than retention, orders within it, and orders whose window leaves retention while
they are being changed.
Expected values come from SQL over the OLTP source and its audit trail
(``chaos.expectations``) and from reading ``late-events`` back with a plain consumer.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agents.analytics import AnalyticsRunner
from agents.analytics_state import state_store
from chaos.env import crossing_retention
from chaos.expectations import expected_late_orders
from chaos.oracle import read_late_records
from config.settings import Settings
from oltp.loadgen import LoadgenConfig, run_loadgen
from sinks.postgres.connection import connect
from tests.integration.analytics_env import (
    analytics_environment,
    gold_differences,
    gold_rows,
    late_differences,
    quiescent,
)
from tests.integration.sink_env import SinkEnv

TRANSACTIONS = 600  # per half
WINDOW = timedelta(days=4)


@pytest.fixture(scope="module")
def env(settings: Settings) -> Iterator[SinkEnv]:
    with analytics_environment(settings) as pipeline:
        yield pipeline


def _crossing(settings: Settings, at: datetime) -> Settings:
    """4-day windows; a 28-day retention (plus under a window) whose edge falls at ``at``."""
    windows = settings.windows.model_copy(
        update={"hourly_revenue_size": WINDOW, "retention": crossing_retention(at, 28, WINDOW)}
    )
    return settings.model_copy(update={"windows": windows})


async def _run(runner: AnalyticsRunner, env: SinkEnv, as_of: datetime) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await quiescent(runner, env, timeout_s=90)
        await runner.flush_now(as_of)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def _identities(settings: Settings) -> Counter[str]:
    """How often each late event (by its identity, the record key) was published."""
    records = read_late_records(settings.kafka.bootstrap_servers, settings.topics.late_events)
    return Counter(key for key, _ in records)


async def _straddling(settings: Settings) -> int:
    """Orders changed both before and after their window left retention (audit trail)."""
    size, retention = settings.windows.hourly_revenue_size, settings.windows.retention
    connection = await connect(settings.postgres)
    try:
        return int(
            await connection.fetchval(
                """
                WITH c AS (
                    SELECT order_id, (new_data ->> 'updated_at')::timestamptz AS changed,
                           date_bin($1::interval, (new_data ->> 'created_at')::timestamptz,
                                    timestamptz '1970-01-01 00:00+00') + $1 + $2 AS edge
                    FROM public.orders_audit WHERE operation <> 'DELETE'
                )
                SELECT count(*) FROM (
                    SELECT order_id FROM c GROUP BY order_id
                    HAVING bool_or(changed < edge) AND bool_or(changed >= edge)
                ) s
                """,
                size,
                retention,
            )
        )
    finally:
        await connection.close()


async def test_first_start_and_lost_state_put_every_late_change_on_late_events_once(
    env: SinkEnv, tmp_path: Path
) -> None:
    load = LoadgenConfig(seed=22, customers=40, transactions=TRANSACTIONS, days_back=40)
    await run_loadgen(env.settings, load)
    settings = _crossing(env.settings, datetime.now(UTC))  # the second half's changes after
    settings = settings.model_copy(
        update={"features": settings.features.model_copy(update={"state_dir": tmp_path})}
    )
    await run_loadgen(settings, replace(load, seed=23))
    connection = await connect(settings.postgres)
    try:
        late = await expected_late_orders(
            connection, settings.windows.retention, settings.windows.hourly_revenue_size
        )
    finally:
        await connection.close()
    assert len(late) > 50  # about 10 of the 40 days are beyond retention
    assert await _straddling(settings) > 0, "no order was changed across the retention edge"

    # 1. First start: the topics already hold orders beyond retention; no run saw them.
    as_of = datetime.now(UTC)
    group = f"bv-analytics-{secrets.token_hex(3)}"
    first = AnalyticsRunner(settings, group_id=group, store=state_store(settings, group))
    await _run(first, env, as_of)
    problems = await gold_differences(settings, as_of, min_windows=20)  # late ones in none
    problems += await late_differences(settings)  # every late order on late-events
    assert problems == [], "\n".join(problems[:20])
    published = _identities(settings)
    assert published
    assert max(published.values()) == 1  # each change published once
    gold = await gold_rows(settings)

    # 2. Restart with the state folder deleted: restored from the changelog alone.
    shutil.rmtree(tmp_path / group)
    second = AnalyticsRunner(settings, group_id=group, store=state_store(settings, group))
    await _run(second, env, as_of)
    assert second.restore is not None
    assert second.restore.from_scratch

    # 3. Restart with every state lost (no changelog): rebuilt by replaying the CDC topics,
    # every late event published again, under the same identities.
    third = AnalyticsRunner(settings, group_id=f"bv-analytics-{secrets.token_hex(3)}")
    await _run(third, env, as_of)
    assert third.stats.late_events_replayed >= len(published)
    again = _identities(settings)
    assert set(again) == set(published)  # nothing lost, nothing new: none counted twice
    assert await gold_rows(settings) == gold  # versions included
    assert await late_differences(settings) == []
