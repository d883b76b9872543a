"""Scale-out stores under faults: a worker SIGKILLed mid-batch, Cassandra and FerretDB restarted.

Each test ends with the independent oracle: exactly the produced events' primary keys in
Cassandra and the newest version of every post in MongoDB, nothing more, nothing less.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import pytest

from agents.crash_points import ENV as CRASH_ENV
from bench.pipeline_env import eventually
from bench.scaleout_env import ScaleoutEnv
from oltp.scaleout_events import ScaleoutLoad
from oltp.scaleout_load import produce_scaleout
from stack.base import Service
from stack.manager import Stack
from tests.faults.cli_workers import start_cli
from tests.integration.scaleout_oracle import (
    env,
    running_stores,
    scaleout_stores,
    stack_is_ready,
    stores_hold,
    telemetry_keys,
)

__all__ = ["env", "scaleout_stores", "stack_is_ready"]  # fixtures

pytestmark = pytest.mark.timeout(600)


def start_worker(
    env: ScaleoutEnv, log: Path, crash_at: str | None = None
) -> subprocess.Popen[bytes]:
    extra = {CRASH_ENV: crash_at} if crash_at else {}
    return start_cli(["scaleout", "worker"], {**env.worker_env(), **extra}, log)


async def test_worker_sigkilled_mid_batch_twice_loses_and_duplicates_nothing(
    env: ScaleoutEnv, tmp_path: Path
) -> None:
    """The worker kills itself between a batch's store write and its offset commit, twice:
    the exact spot where at-least-once redelivers, so the writes must be idempotent."""
    load = ScaleoutLoad(seed=31, chat_messages=1500, telemetry=3000, posts=200, post_updates=200)
    await asyncio.to_thread(produce_scaleout, env.settings, load)
    log = tmp_path / "worker.log"
    # Batches hold at most 200 records: the third write of the first run leaves >= 2,400
    # telemetry events for the second run, whose second write is then surely mid-load too.
    for crash_at in ("telemetry_after_write@3", "telemetry_after_write@2"):
        worker = start_worker(env, log, crash_at)
        code = await asyncio.to_thread(worker.wait, 180)
        assert code == -signal.SIGKILL, f"{crash_at}: exit {code}\n{log.read_text()[-2000:]}"
        seen = len(telemetry_keys(env.settings))
        assert 0 < seen < load.telemetry, f"{crash_at} did not interrupt the load ({seen} rows)"
    survivor = start_worker(env, log)
    await eventually(
        lambda: asyncio.to_thread(stores_hold, env.settings, load),
        timeout_s=240,
        what="every event stored after the kills",
    )
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(30) == 0, log.read_text()[-2000:]
    assert stores_hold(env.settings, load)


async def _wait_ready(service: Service) -> None:
    async def ready() -> bool:
        return await asyncio.to_thread(service.probe_quietly) is not None

    await eventually(ready, timeout_s=240, what=f"{service.name} to come back")


@pytest.mark.parametrize("store", ["cassandra", "ferretdb"])
async def test_store_restart_mid_load_loses_nothing(
    env: ScaleoutEnv, scaleout_stores: Stack, store: str
) -> None:
    service = scaleout_stores.service(store)
    if service.pid() is None:
        pytest.fail(
            f"{store} is not run by the stack in {scaleout_stores.settings.stack.state_dir}; "
            "set BV_SCALEOUT_TEST_STATE_DIR to the state folder that runs it"
        )
    first = ScaleoutLoad(seed=41, chat_messages=600, telemetry=1200, posts=100, post_updates=100)
    second = ScaleoutLoad(seed=41, chat_messages=900, telemetry=1800, posts=100, post_updates=200)
    await asyncio.to_thread(produce_scaleout, env.settings, first)
    async with running_stores(env.settings) as stores:
        await eventually(
            lambda: asyncio.to_thread(lambda: len(telemetry_keys(env.settings)) > 0),
            timeout_s=120,
            what="first writes",
        )
        await asyncio.to_thread(service.stop)
        # Load arrives while the store is down: the agents take it and must wait it out.
        # The same seed makes the first load's events again, then more: all idempotent.
        await asyncio.to_thread(produce_scaleout, env.settings, second)
        await asyncio.sleep(3)  # the writers meet refused connections, not just resets
        await asyncio.to_thread(service.start)
        await _wait_ready(service)
        await eventually(
            lambda: asyncio.to_thread(stores_hold, env.settings, second),
            timeout_s=300,
            what="every event stored after the restart",
        )
    assert sum(a.stats.retries for a in stores.agents.values()) >= 1
