"""Scale-out bronze under SIGKILL at fixed points of the batch (``BV_FAULT_CRASH_AT``).

A ``bitvelocity worker --with-scaleout`` process kills itself inside the batch's
transaction (bronze rows copied, offsets not moved, not committed) and, on its next run,
right after a commit; each time the rows and the stored offsets must still agree (I2),
and after a clean restart every event is in bronze exactly once (I1, I6), judged by the
oracle in ``tests/integration/scaleout_bronze_env.py``.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.crash_points import ENV as CRASH_AT
from bench.pipeline_env import SinkEnv
from config.settings import Settings
from oltp.scaleout_events import ScaleoutLoad
from oltp.scaleout_load import produce_scaleout
from tests.faults.cli_workers import start_cli
from tests.integration.scaleout_bronze_env import (
    assert_bronze_exactly_once,
    bronze_rows,
    expected_events,
    scaleout_bronze_environment,
    wait_until_stored,
    worker_env,
)
from tests.integration.sink_env import stored_offsets

pytestmark = pytest.mark.timeout(420)

WORKER = ["worker", "--agents", "medallion", "--no-metrics", "--with-scaleout"]
LOAD = ScaleoutLoad(seed=23, chat_messages=600, telemetry=900, posts=80, post_updates=160)
TOTAL = LOAD.chat_messages + LOAD.telemetry + LOAD.posts + LOAD.post_updates


@pytest.fixture
def env(settings: Settings) -> Iterator[SinkEnv]:
    with scaleout_bronze_environment(settings, batch_max_records=100) as env:
        yield env


async def test_worker_killed_inside_and_after_the_bronze_transaction_loses_and_duplicates_nothing(
    env: SinkEnv, tmp_path: Path
) -> None:
    await asyncio.to_thread(produce_scaleout, env.settings, LOAD)
    log = tmp_path / "worker.log"
    for point in ("after_bronze@3", "after_commit@4"):
        worker = start_cli(WORKER, {**worker_env(env), CRASH_AT: point}, log)
        code = await asyncio.to_thread(worker.wait, 240)
        assert code == -signal.SIGKILL, f"{point}: exit {code}\n{log.read_text()[-3000:]}"
        # At the instant of the kill, rows and offsets moved together (I2): one row per
        # offset below the stored ones, and the killed transaction's rows are not there.
        rows = sum(len(r) for r in (await bronze_rows(env)).values())
        stored = sum((await stored_offsets(env)).values())
        assert rows == stored, f"{point}: {rows} bronze rows but offsets stored up to {stored}"
        assert 0 < rows < TOTAL, f"{point}: the kill did not come mid-load ({rows} rows)"
    survivor = start_cli(WORKER, worker_env(env), log)
    await wait_until_stored(env, TOTAL, timeout_s=240)
    survivor.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(survivor.wait, 60) == 0, log.read_text()[-3000:]
    counts = await assert_bronze_exactly_once(env, expected_events(LOAD))
    assert sum(counts.values()) == TOTAL
