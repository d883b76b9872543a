"""I4 and I5 for the real-time analytics against the real stack and the load generator.

An isolated pipeline (own database, connector, topic prefix, group, Redis key prefix) gets
a seeded workload over 40 days with cancellations, amount edits, soft and hard deletes,
price and category changes. After quiescence and one final tick at ``as_of``:
``gold.hourly_revenue`` equals the SQL oracle to the cent for every window within retention,
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

from agents.analytics import AnalyticsRunner, analytics_topics
from config.settings import Settings
from oltp.loadgen import LoadgenConfig, run_loadgen
from tests.integration.analytics_env import (
    analytics_environment,
    gold_differences,
    gold_rows,
    redis_differences,
)
from tests.integration.sink_env import SinkEnv, high_watermarks

#: Everything the module creates is removed again, also when a test fails.
pytestmark = pytest.mark.usefixtures("no_leftovers")

TRANSACTIONS = 12500  # ~5k orders over 40 days: ~25 s of loading on the shared 2-core box


@pytest.fixture(scope="module")
def env(settings: Settings) -> Iterator[SinkEnv]:
    with analytics_environment(settings) as pipeline:
        yield pipeline


async def _quiescent(runner: AnalyticsRunner, env: SinkEnv, timeout_s: float) -> None:
    """Until every analytics topic is read to its high watermark twice in a row, 1 s apart."""
    wanted = set(analytics_topics(env.settings))
    deadline = time.monotonic() + timeout_s
    previous: dict[tuple[str, int], int] | None = None
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
        await _quiescent(runner, env, timeout_s=120)
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
        await _quiescent(restarted, env, timeout_s=120)
        await restarted.flush_now(as_of)
    finally:
        second.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await second
    assert restarted.recovered_after_s is not None
    # Outputs unchanged, versions included, for every window within retention (older ones
    # depend on when the watermark formed, in either run, and are late events by definition).
    oldest = watermark - settings.windows.retention - settings.windows.hourly_revenue_size
    again = await gold_rows(settings)
    assert [r for r in again[0] if r[0] > oldest] == [r for r in first_gold[0] if r[0] > oldest]
    assert again[1] == first_gold[1]
    print(
        f"\nrecovery: {restarted.stats.changes} changes replayed, state rebuilt in"
        f" {restarted.recovered_after_s:.1f}s; re-emitted {restarted.stats.hourly_rows}"
        f" windows, {restarted.stats.feature_rows} customers"
    )
    print(
        f"\nloadgen {result.transactions} tx ({result.actions}) in {loaded_s:.1f}s;"
        f" analytics caught up {caught_up_s:.1f}s later; {runner.stats}"
    )

    problems = await gold_differences(settings, watermark, as_of)
    assert problems == [], "\n".join(problems)  # I4, to the cent
    late = runner.stats.late_events + runner.stats.late_events_replayed
    assert late > 0  # the workload reaches 40 days back, retention is 35
    assert await redis_differences(settings) == []  # I5: Redis holds what PostgreSQL holds
