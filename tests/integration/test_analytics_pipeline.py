"""I4 and I5 for the real-time analytics against the real stack and the load generator.

An isolated pipeline (own database, connector, topic prefix, group, Redis key prefix) gets
a seeded workload over 40 days with cancellations, amount edits, soft and hard deletes,
price and category changes. After quiescence and one final tick at ``as_of``:
``gold.hourly_revenue`` equals the SQL oracle to the cent for every window (orders as they
stood before their window left retention; later changes are on ``late-events``),
``gold.customer_features`` equals it as of ``as_of``, and Redis equals PostgreSQL (I5).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from agents.analytics import AnalyticsRunner
from config.settings import Settings
from oltp.loadgen import LoadgenConfig, run_loadgen
from tests.integration.analytics_env import (
    analytics_environment,
    gold_differences,
    gold_rows,
    late_differences,
    quiescent,
    redis_differences,
)
from tests.integration.sink_env import SinkEnv

#: Everything the module creates is removed again, also when a test fails.
pytestmark = pytest.mark.usefixtures("no_leftovers")

TRANSACTIONS = 12500  # ~5k orders over 40 days: ~25 s of loading on the shared 2-core box


@pytest.fixture(scope="module")
def env(settings: Settings) -> Iterator[SinkEnv]:
    with analytics_environment(settings) as pipeline:
        yield pipeline


async def test_gold_and_redis_equal_a_sql_recomputation(env: SinkEnv) -> None:
    settings = env.settings
    started = time.monotonic()
    result = await run_loadgen(
        settings, LoadgenConfig(seed=6, customers=60, transactions=TRANSACTIONS, days_back=40)
    )
    loaded_s = time.monotonic() - started
    frozen: list[datetime] = []  # once set, the runner's clock stands still at as_of
    runner = AnalyticsRunner(
        settings,
        group_id=f"bv-analytics-{secrets.token_hex(3)}",
        clock=lambda: frozen[0] if frozen else datetime.now(UTC),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await quiescent(runner, env, timeout_s=120)
        as_of = datetime.now(UTC)
        frozen.append(as_of)
        await runner.flush_now(as_of)
        caught_up_s = time.monotonic() - started - loaded_s
        assert runner.core is not None
        watermark = runner.core.watermarks.current()
        assert watermark is not None
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    first_gold = await gold_rows(settings)

    # Kill (cancel, no clean stop) and restart with no local state: the replay rebuilds it.
    restarted = AnalyticsRunner(
        settings, group_id=f"bv-analytics-{secrets.token_hex(3)}", clock=lambda: as_of
    )
    second = asyncio.create_task(restarted.run(asyncio.Event()))
    try:
        await quiescent(restarted, env, timeout_s=120)
        await restarted.flush_now(as_of)
    finally:
        second.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await second
    assert restarted.recovered_after_s is not None
    # Outputs unchanged, versions included, for every window: lateness is judged by each
    # change's own time, so the rebuilt state is the same whatever the watermark did.
    again = await gold_rows(settings)
    assert again == first_gold
    print(
        f"\nrecovery: {restarted.stats.changes} changes replayed, state rebuilt in"
        f" {restarted.recovered_after_s:.1f}s; re-emitted {restarted.stats.hourly_rows}"
        f" windows, {restarted.stats.feature_rows} customers"
    )
    print(
        f"\nloadgen {result.transactions} tx ({result.actions}) in {loaded_s:.1f}s;"
        f" analytics caught up {caught_up_s:.1f}s later; {runner.stats}"
    )

    problems = await gold_differences(settings, as_of)
    assert problems == [], "\n".join(problems)  # I4, to the cent
    assert await late_differences(settings) == []  # every late change on late-events
    late = runner.stats.late_events + runner.stats.late_events_replayed
    assert late > 0  # the workload reaches 40 days back, retention is 35
    assert await redis_differences(settings) == []  # I5: Redis holds what PostgreSQL holds
