"""The chaos oracle passes a correct pipeline and names the invariant of each deliberate break.

A small workload runs through real worker processes into an isolated pipeline; once the
oracle passes, the test breaks one thing at a time the way a buggy pipeline would (a
silver value flipped, an offset skipped, a cent off in gold, a stale Redis feature) and
checks that the oracle, run as the CLI (`bitvelocity chaos oracle`) or in process, fails
naming that invariant. Each break is undone before the next.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from chaos.env import ChaosEnv, chaos_environment
from chaos.oracle import OracleTarget, judge, render
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
        [sys.executable, "-m", "streams.cli", "chaos", "oracle", "--allowed-stall", "600"],
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
        columns = ", ".join(skipped.keys())
        values = ", ".join(f"${i}" for i in range(1, len(skipped) + 1))
        await connection.execute(
            f"INSERT INTO bronze.orders ({columns}) VALUES ({values})", *skipped.values()
        )
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
    assert (await judge(target)).passed
