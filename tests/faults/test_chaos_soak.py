"""A 3-minute seeded chaos soak on the real stack passes the independent oracle (I1-I7).

The load generator and two worker processes run on an isolated pipeline while the seeded
schedule injects faults, among them restarts of the stack's own services; the run ends with
every service back up and ready (later tests need them), and the oracle must pass. The
fault log and the oracle's table are printed (``pytest -s``) for the record.

Strict: any violation fails. Its I4 finding (issue 11: a few customers' preferred_category
differed from the SQL recomputation) came from the run's workers restoring earlier runs'
analytics state from the stack's default changelog; each run now has its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from chaos.env import ChaosEnv, chaos_environment
from chaos.runner import ChaosConfig, run_chaos
from cli.chaos import render_report
from config.settings import Settings
from stack.manager import Stack

#: Seed 33's fault deck starts: worker-kill, schema-change, resnapshot, poison, postgres-restart,
#: connect-restart, redis-restart, kafka-restart, network-pause, ...; slow faults are not
#: started in the last 75 s, so three minutes meet about nine kinds (the 30-minute run by hand
#: meets them all).
SEED = 33


@pytest.fixture
def env(settings: Settings) -> Iterator[ChaosEnv]:
    with chaos_environment(settings) as environment:
        yield environment


@pytest.mark.timeout(900)
async def test_three_minute_seeded_chaos_run_passes_the_oracle(
    settings: Settings, env: ChaosEnv
) -> None:
    # Worker logs in the stack's state folder: pytest's temporary folders are rotated away.
    log_dir = settings.stack.state_dir / "chaos"
    config = ChaosConfig(minutes=3, seed=SEED, log_dir=log_dir)
    report = await run_chaos(settings, env, config, print)
    print("\n" + render_report(report))
    assert report.verdict.violations == [], render_report(report)
    assert len({f.kind for f in report.faults}) >= 5  # a real mix, not one fault repeated
    # The stack's probes run event loops of their own: not on this one.
    statuses = await asyncio.to_thread(Stack(settings).status)
    assert all(row.ready for row in statuses), "a service was left down"
