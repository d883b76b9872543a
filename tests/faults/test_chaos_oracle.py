"""The chaos oracle passes a correct pipeline and names the invariant of each deliberate break.

A small workload runs through real worker processes into an isolated pipeline; once the
oracle passes, the test breaks one thing at a time the way a buggy pipeline would (a
silver value flipped, an offset skipped, a cent off in gold, a stale Redis feature, a late
order counted in gold, a late event missing) and
checks that the oracle, run as the CLI (`bitvelocity chaos oracle`) or in process, fails
naming that invariant. Each break is undone before the next.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
import redis
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from chaos.env import ChaosEnv, chaos_environment
from chaos.expectations import expected_late_orders
from chaos.oracle import OracleTarget, judge, read_late_records, render
from chaos.runner import DAYS_BACK, ChaosReport, converge, drain
from chaos.workers import WorkerPool
from config.settings import Settings
from oltp.loadgen import LoadgenConfig, run_loadgen
from sinks.postgres.connection import connect


@pytest.fixture(scope="module")
def env(settings: Settings) -> Iterator[ChaosEnv]:
    with chaos_environment(settings, batch_max_records=100) as environment:
        yield environment


def _say(message: str) -> None:
    print(message)


def run_oracle_cli(env: ChaosEnv) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "chaos", "oracle", "--allowed-stall", "600"],
        env={**os.environ, **env.worker_env()},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def _execute(env: ChaosEnv, sql: str) -> None:
    connection = await connect(env.settings.postgres)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.mark.timeout(600)
async def test_oracle_passes_the_pipeline_and_names_each_deliberate_break(
    env: ChaosEnv, tmp_path: Path
) -> None:
    await run_loadgen(env.settings, LoadgenConfig(seed=41, transactions=300, days_back=DAYS_BACK))
    pool = WorkerPool(
        env.worker_env(),
        tmp_path,
        {"w1": ("medallion", "analytics", "cache"), "w2": ("medallion",)},
    )
    pool.start_all()
    try:
        await drain(env, pool, ChaosReport(), 240, _say)
        target = OracleTarget(env.settings, env.medallion_group, allowed_stall_s=600)
        verdict = await converge(target, 180, _say)
    finally:
        pool.stop_all()
    assert verdict.passed, render(verdict)
    assert (
        verdict.figures["records consumed"]
        == verdict.figures["bronze rows"] + verdict.figures["filtered"]
    )
    passing = run_oracle_cli(env)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "ORACLE: PASS" in passing.stdout

    # I3: one silver value flipped.
    flip = (
        "UPDATE silver.orders SET total_amount = total_amount + {delta} "
        "WHERE order_id = (SELECT min(order_id) FROM silver.orders)"
    )
    await _execute(env, flip.format(delta=1))
    broken = run_oracle_cli(env)
    await _execute(env, flip.format(delta=-1))
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "ORACLE: FAIL I3" in broken.stdout
    assert "I3" in broken.stderr  # the one error line names it too

    # I1 (and I2, I6): one offset skipped, as if the sink moved past a record without it.
    connection = await connect(env.settings.postgres)
    try:
        skipped = await connection.fetchrow(
            "DELETE FROM bronze.orders WHERE ctid = (SELECT ctid FROM bronze.orders LIMIT 1) "
            "RETURNING *"
        )
        verdict = await judge(target)
        await _insert(connection, "bronze.orders", skipped)
    finally:
        await connection.close()
    assert {"I1", "I2", "I6"} <= set(verdict.broken), render(verdict)
    assert "I3" not in verdict.broken

    # I4: gold one cent off.
    cent = (
        "UPDATE gold.hourly_revenue SET revenue = revenue + {delta} WHERE (window_start, "
        "currency) = (SELECT window_start, currency FROM gold.hourly_revenue "
        "WHERE order_count > 0 ORDER BY 1, 2 LIMIT 1)"
    )
    await _execute(env, cent.format(delta="0.01"))
    verdict = await judge(target)
    await _execute(env, cent.format(delta="-0.01"))
    assert verdict.broken == ["I4"], render(verdict)

    # I5: a stale feature value left in Redis.
    r = env.settings.redis
    client = redis.Redis(
        host=r.host, port=r.port, username=r.client_auth()[0], password=r.client_auth()[1], db=r.db
    )
    try:
        key = next(client.scan_iter(match=f"{env.settings.features.redis_prefix}*"))
        original = client.hget(key, "lifetime_order_count")
        client.hset(key, "lifetime_order_count", "999")
        verdict = await judge(target)
        client.hset(key, "lifetime_order_count", original or b"")
    finally:
        client.close()
    assert verdict.broken == ["I5"], render(verdict)

    await _late_breaks(env, target)
    assert (await judge(target)).passed


async def _insert(connection: asyncpg.Connection, table: str, row: asyncpg.Record) -> None:
    """Put back a row a break removed (``table`` is a constant of this test)."""
    columns = ", ".join(row.keys())
    values = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    await connection.execute(f"INSERT INTO {table} ({columns}) VALUES ({values})", *row.values())


async def _late_breaks(env: ChaosEnv, target: OracleTarget) -> None:
    """Retention (issue 22): the run's load lies on both sides of it, so some orders are on
    late-events. I4 fails when one of them is counted in gold, and when its late event is
    missing."""
    settings = env.settings
    windows = settings.windows
    connection = await connect(settings.postgres)
    try:
        late = await expected_late_orders(connection, windows.retention)
        assert late, "the run's load put no order beyond retention"
        order_id, start, currency = min(late)
        amount = await connection.fetchval(
            "SELECT total_amount FROM public.orders WHERE order_id = $1", order_id
        )
        saved = await connection.fetchrow(
            "SELECT * FROM gold.hourly_revenue WHERE window_start = $1 AND currency = $2",
            start,
            currency,
        )
        # A late order put into gold.
        await connection.execute(
            "INSERT INTO gold.hourly_revenue AS g (window_start, currency, revenue,"
            " order_count, avg_order_value, is_final, version) VALUES ($1, $2, $3, 1, $3, true, 1)"
            " ON CONFLICT (window_start, currency) DO UPDATE SET revenue = g.revenue + $3,"
            " order_count = g.order_count + 1",
            start,
            currency,
            amount or Decimal("1.00"),
        )
        verdict = await judge(target)
        await connection.execute(
            "DELETE FROM gold.hourly_revenue WHERE window_start = $1 AND currency = $2",
            start,
            currency,
        )
        if saved is not None:
            await _insert(connection, "gold.hourly_revenue", saved)
    finally:
        await connection.close()
    assert verdict.broken == ["I4"], render(verdict)
    assert "hourly revenue windows differ" in render(verdict)

    # Its late event removed: the oracle reads a copy of late-events without that order.
    copy = f"{settings.topics.late_events}-without-one"
    kept = _copy_late_events(settings, copy, drop=order_id)
    assert kept > 0
    without = OracleTarget(
        settings.model_copy(
            update={"topics": settings.topics.model_copy(update={"late_events": copy})}
        ),
        target.group,
        allowed_stall_s=target.allowed_stall_s,
    )
    verdict = await judge(without)
    assert verdict.broken == ["I4"], render(verdict)
    assert f"order {order_id} " in render(verdict)


def _copy_late_events(settings: Settings, topic: str, *, drop: int) -> int:
    """``late-events`` copied to ``topic`` without the records of order ``drop``."""
    bootstrap = settings.kafka.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until the topic exists
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap})
    kept = 0
    for key, value in read_late_records(bootstrap, settings.topics.late_events):
        if value.get("order_id") != drop:
            producer.produce(topic, key=key.encode(), value=json.dumps(value).encode())
            kept += 1
    assert producer.flush(30) == 0
    return kept
