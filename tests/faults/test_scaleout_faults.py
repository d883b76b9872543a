"""Scale-out stores under faults: a worker SIGKILLed mid-batch, Cassandra and FerretDB restarted.

Each test ends with the independent oracle: exactly the produced events' primary keys in
Cassandra and the newest version of every post in MongoDB, nothing more, nothing less.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.pipeline_env import eventually
from bench.scaleout_env import ScaleoutEnv
from oltp.scaleout_events import ScaleoutLoad
from oltp.scaleout_load import produce_scaleout
from stack.base import Service
from stack.manager import Stack
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

_workers: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def no_orphan_workers() -> Iterator[None]:
    """A failing test must not leave a worker running into the next test."""
    yield
    while _workers:
        worker = _workers.pop()
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def start_worker(env: ScaleoutEnv, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:  # the child keeps its own copy of the descriptor
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "scaleout", "worker"],
            env={**os.environ, **env.worker_env()},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    _workers.append(worker)
    return worker


async def test_worker_sigkilled_mid_batch_twice_loses_and_duplicates_nothing(
    env: ScaleoutEnv, tmp_path: Path
) -> None:
    # Enough telemetry that the worker (~10k readings/s here) is still at it when killed.
    load = ScaleoutLoad(seed=31, chat_messages=1500, telemetry=15000, posts=200, post_updates=200)
    await asyncio.to_thread(produce_scaleout, env.settings, load)
    log = tmp_path / "worker.log"
    seen = 0
    for _ in range(2):
        worker = start_worker(env, log)
        floor = seen

        async def progressed(floor: int = floor) -> bool:
            return len(await asyncio.to_thread(telemetry_keys, env.settings)) > floor

        await eventually(progressed, timeout_s=180, what="the worker to write telemetry")
        worker.send_signal(signal.SIGKILL)  # wherever it is: inside a batch, most likely
        worker.wait(10)
        seen = len(telemetry_keys(env.settings))
    assert seen < load.telemetry, "the kills came too late to interrupt anything"
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
