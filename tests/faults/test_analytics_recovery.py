"""The analytics worker killed, its local state folder deleted, restarted: rebuilt from changelog.

One `bitvelocity worker --agents analytics` subprocess on an isolated pipeline under a real
seeded load (orders over 40 days, cancellations, edits, deletes):
1. SIGKILL mid-load, restart with the folder kept (local state + changelog tail);
2. after quiescence gold equals the SQL oracle (I4) and Redis equals gold (I5);
3. SIGKILL, delete the state folder, restart: the state comes back from the changelog
   alone (the health view says so), gold and Redis are unchanged and still equal the
   oracle. Recovery time and state size are printed;
4. the web views over real HTTP on the restarted worker: values equal the oracle, every
   answer carries ``as_of`` and the watermark, the bearer token is enforced.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.analytics import analytics_topics
from bench.worker_process import AnalyticsWorkerProcess
from config.settings import Settings
from oltp.loadgen import LoadgenConfig, run_loadgen
from sinks.postgres.connection import connect
from tests.integration.analytics_env import (
    analytics_environment,
    analytics_worker_env,
    gold_differences,
    gold_rows,
    late_differences,
    redis_differences,
)
from tests.integration.analytics_oracle import expected_features, expected_hourly
from tests.integration.sink_env import SinkEnv, eventually, high_watermarks

TRANSACTIONS = 6000  # ~2.4k orders over 40 days


@pytest.fixture
def env(settings: Settings) -> Iterator[SinkEnv]:
    with analytics_environment(settings) as environment:
        yield environment


@pytest.fixture
def analytics_worker(env: SinkEnv, tmp_path: Path) -> Iterator[Worker]:
    """The worker of the test; a failing test must not leave its process running."""
    worker = Worker(env, tmp_path)
    yield worker
    if worker.process is not None and worker.process.poll() is None:
        worker.process.kill()
        worker.process.wait(10)


class Worker(AnalyticsWorkerProcess):
    """The analytics worker subprocess (the benchmark's) on the test's pipeline."""

    def __init__(self, env: SinkEnv, tmp_path: Path) -> None:
        self.state_dir = tmp_path / "analytics-state"
        super().__init__(
            analytics_worker_env(env, state_dir=self.state_dir), tmp_path / "worker.log"
        )

    def get(self, path: str, token: str | None = "", **params: str) -> httpx.Response:
        auth = self.token if token == "" else token
        headers = {} if auth is None else {"Authorization": f"Bearer {auth}"}
        return httpx.get(
            f"http://127.0.0.1:{self.port}{path}", params=params, headers=headers, timeout=10
        )

    async def health(self) -> dict[str, Any] | None:
        """The health answer once the state is restored and reconciled, else None."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited: {self.log.read_text()[-3000:]}")
        try:
            response = await asyncio.to_thread(self.get, "/health")
        except httpx.TransportError:
            return None
        return response.json() if response.status_code == 200 else None

    async def recovered(self, timeout_s: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            answer = await self.health()
            if answer is not None:
                return answer
            await asyncio.sleep(0.2)
        raise AssertionError(f"worker not recovered: {self.log.read_text()[-3000:]}")

    async def caught_up(self, env: SinkEnv, timeout_s: float = 180) -> dict[str, Any]:
        """Until every analytics topic is read to its end, twice in a row 1 s apart."""
        wanted = set(analytics_topics(env.settings))
        previous: dict[tuple[str, int], int] | None = None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            marks = {k: v for k, v in high_watermarks(env).items() if k[0] in wanted and v > 0}
            answer = await self.recovered()
            read = {(p["topic"], p["partition"]): p["next_offset"] for p in answer["positions"]}
            done = bool(marks) and all(read.get(k, 0) >= v for k, v in marks.items())
            if done and marks == previous:
                await asyncio.sleep(1.5)  # a flush interval (0.5 s) and then some
                return answer
            previous = marks if done else None
            await asyncio.sleep(1.0)
        raise AssertionError(f"analytics did not catch up: {self.log.read_text()[-2000:]}")


async def equal_to_oracle(env: SinkEnv, worker: Worker, timeout_s: float = 60) -> datetime:
    """Until gold equals the oracle (I4) and Redis equals gold (I5); returns the watermark."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await worker.recovered()
        watermark = datetime.fromisoformat(answer["watermark"])
        problems = await gold_differences(env.settings, datetime.now(UTC))
        problems += await redis_differences(env.settings)
        problems += await late_differences(env.settings)
        if not problems:
            return watermark
        if time.monotonic() > deadline:  # ageing out is live: retry, then fail with the diff
            raise AssertionError("\n".join(problems[:20]))
        await asyncio.sleep(1.0)


async def customers_ageing_between(env: SinkEnv, since: datetime, until: datetime) -> set[int]:
    """Customers with an order crossing the 30-day look-back in ``[since, until]``."""
    lookback = env.settings.windows.features_lookback
    connection = await connect(env.settings.postgres)
    try:
        rows = await connection.fetch(
            "SELECT DISTINCT customer_id FROM public.orders WHERE created_at + $3::interval"
            " BETWEEN $1 AND $2",
            since - timedelta(seconds=2),
            until + timedelta(seconds=2),
            lookback,
        )
        return {r["customer_id"] for r in rows}
    finally:
        await connection.close()


@pytest.mark.timeout(900)
async def test_killed_worker_rebuilds_state_from_changelog_and_serves_views(
    env: SinkEnv, analytics_worker: Worker
) -> None:
    worker = analytics_worker
    load = asyncio.create_task(
        run_loadgen(
            env.settings,
            LoadgenConfig(seed=9, customers=40, transactions=TRANSACTIONS, days_back=40, rate=200),
        )
    )

    async def published() -> bool:
        return sum(high_watermarks(env).values()) > 0

    await eventually(published, timeout_s=60, what="the first CDC records")
    # 1. SIGKILL mid-load, restart with the local folder kept.
    worker.start()
    answer = await worker.recovered()
    await eventually(
        lambda: _read_some(worker), timeout_s=120, what="the worker consuming the load"
    )
    assert not load.done(), "the load ended before the kill: raise TRANSACTIONS or lower rate"
    worker.kill()
    worker.start()
    answer = await worker.recovered()
    assert answer["restore"]["from_scratch"] is False  # the folder was used
    assert answer["restore"]["local_entries"] > 0
    result = await load

    # 2. Quiescence: I4 and I5.
    await worker.caught_up(env)
    watermark = await equal_to_oracle(env, worker)
    before_at = datetime.now(UTC)
    before = await gold_rows(env.settings)

    # 3. SIGKILL, delete the state folder, restart: rebuilt from the changelog alone.
    worker.kill()
    assert any(worker.state_dir.rglob("*")), "the worker kept no local state"
    shutil.rmtree(worker.state_dir)
    worker.start()
    answer = await worker.recovered()
    ready_s = time.monotonic() - worker.started
    restore = answer["restore"]
    assert restore["from_scratch"] is True
    assert restore["local_entries"] == 0
    assert restore["changelog_records"] > 0
    await worker.caught_up(env)
    after = await gold_rows(env.settings)
    after_at = datetime.now(UTC)
    ageing = await customers_ageing_between(env, before_at, after_at)
    size = env.settings.windows
    final_before = watermark - size.grace_period - size.hourly_revenue_size
    oldest = watermark - size.retention
    # Outputs unchanged, versions included: every window final before the kill and within
    # retention, every customer (but one whose order aged out meanwhile: that is live).
    assert [r for r in after[0] if oldest < r[0] <= final_before] == [
        r for r in before[0] if oldest < r[0] <= final_before
    ]
    assert [r for r in after[1] if r[0] not in ageing] == [
        r for r in before[1] if r[0] not in ageing
    ]
    await equal_to_oracle(env, worker)
    print(
        f"\nanalytics recovery from the changelog alone: {restore['state_entries']} state"
        f" entries from {restore['changelog_records']} changelog records"
        f" ({restore['changelog_bytes'] / 1e6:.2f} MB) restored in {restore['seconds']:.2f} s;"
        f" state reconciled {answer['recovered_after_s']:.2f} s after the runner started;"
        f" views answering {ready_s:.1f} s after process start."
        f" Load: {result.transactions} transactions ({result.actions});"
        f" {len(before[0])} windows, {len(before[1])} customers in gold"
    )

    # 4. The views over HTTP, on the restarted worker, against the oracle.
    await check_views(env, worker)
    assert worker.process is not None
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(30) == 0, worker.log.read_text()[-2000:]


async def _read_some(worker: Worker) -> bool:
    answer = await worker.health()
    if answer is None or answer["state_commits"] < 2:  # killed after a flush, not in the first
        return False
    return sum(p["next_offset"] for p in answer["positions"]) > 200


async def check_views(env: SinkEnv, worker: Worker) -> None:
    for token in (None, "wrong"):
        for path in ("/health", "/revenue/hourly", "/features/customers/1"):
            assert (await asyncio.to_thread(worker.get, path, token)).status_code == 401
    connection = await connect(env.settings.postgres)
    try:
        hourly = await expected_hourly(connection)
        features = await expected_features(connection, datetime.now(UTC))
    finally:
        await connection.close()
    # The busiest day in one currency, within retention.
    (start, currency), _ = max(
        ((k, v) for k, v in hourly.items() if k[0] > datetime.now(UTC) - timedelta(days=20)),
        key=lambda item: item[1][1],
    )
    since, until = start - timedelta(hours=12), start + timedelta(hours=12)
    response = await asyncio.to_thread(
        worker.get,
        "/revenue/hourly",
        **{"from": since.isoformat(), "to": until.isoformat(), "currency": currency},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["as_of"]
    assert body["watermark"]
    served = {
        (datetime.fromisoformat(w["window_start"]), w["currency"]): (
            Decimal(w["revenue"]),
            w["order_count"],
            Decimal(w["avg_order_value"]) if w["avg_order_value"] else None,
        )
        for w in body["windows"]
        if w["order_count"] > 0
    }
    expected = {k: v for k, v in hourly.items() if since <= k[0] < until and k[1] == currency}
    assert served == expected
    assert len(expected) > 1
    customer_id = max(features, key=lambda c: features[c][4])  # most orders
    response = await asyncio.to_thread(worker.get, f"/features/customers/{customer_id}")
    assert response.status_code == 200
    answer = response.json()
    assert answer["as_of"]
    assert answer["watermark"]
    values = features[customer_id]
    assert (
        answer["order_count_last_30_days"],
        Decimal(answer["total_spent_last_30_days"]),
        answer["lifetime_order_count"],
        Decimal(answer["lifetime_value"]),
        answer["lifetime_segment"],
        answer["preferred_category"],
    ) == (values[0], values[1], values[4], values[5], values[6], values[3])
    assert (await asyncio.to_thread(worker.get, "/health")).json()["status"] == "ok"
