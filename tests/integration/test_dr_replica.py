"""Drill: a streaming replica under load reports its lag; after promote the pipeline goes on.

Debezium keeps capturing from the shared cluster's test database; the sink's warehouse lives
on a throw-away primary of this test, streamed to a throw-away replica. The primary is then
killed, the replica promoted, and the sink pointed at it by settings alone: it resumes from
the offsets the replica holds, so I1 and I3 hold even for commits the replica never got.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backup.cluster import LocalCluster
from backup.replica import ReplicaStatus, promote, replica_status, replica_up
from config.settings import Settings
from oltp.loadgen import LoadgenConfig, run_loadgen
from sinks.postgres.connection import ensure_database
from sinks.postgres.warehouse import migrate_warehouse
from tests.integration.sink_env import (
    SinkEnv,
    assert_exactly_once,
    expected_records,
    running_sink,
    sink_environment,
    wait_until_caught_up,
)
from tests.local_resources import free_port, scratch_folder


@pytest.fixture
def root() -> Iterator[Path]:
    with scratch_folder("bv-replica-") as folder:
        yield folder


@pytest.fixture
def clusters(root: Path) -> Iterator[tuple[LocalCluster, LocalCluster]]:
    primary = LocalCluster(root / "primary" / "data", free_port())
    replica = LocalCluster(root / "replica" / "data", free_port())
    primary.initdb()
    primary.write_conf(["shared_buffers = 32MB", "max_connections = 40"])
    primary.start()
    try:
        yield primary, replica
    finally:
        replica.stop(mode="immediate")
        primary.stop(mode="immediate")


@pytest.fixture
def env(settings: Settings) -> Iterator[SinkEnv]:
    with sink_environment(settings, batch_max_records=100) as environment:
        yield environment


def on(env: SinkEnv, cluster: LocalCluster) -> SinkEnv:
    """The same pipeline with its warehouse on ``cluster`` (configuration only)."""
    pg = cluster.settings(env.settings.postgres).model_copy(update={"admin_user": "postgres"})
    return SinkEnv(env.settings.model_copy(update={"postgres": pg}), env.run_id)


async def test_promoted_replica_takes_over_the_pipeline_and_invariants_hold(
    env: SinkEnv, clusters: tuple[LocalCluster, LocalCluster]
) -> None:
    primary, replica = clusters
    first = on(env, primary)
    await ensure_database(first.settings.postgres, first.database)
    await migrate_warehouse(first.settings)
    await asyncio.to_thread(
        replica_up, first.settings.postgres, "bv_replicator", "drill-only-secret", replica
    )
    standby = on(env, replica).settings.postgres

    seen: list[ReplicaStatus] = []
    async with running_sink(first):
        load = asyncio.create_task(
            run_loadgen(env.settings, LoadgenConfig(seed=51, transactions=150))
        )
        while not load.done():
            seen.append(await replica_status(first.settings.postgres, standby))
            await asyncio.sleep(0.2)
        one = await load
        await wait_until_caught_up(first, expected_records(one))
        seen.append(await replica_status(first.settings.postgres, standby))
    assert any(s.streaming and s.lag_bytes is not None for s in seen), seen
    assert all(s.in_recovery for s in seen)
    lag_at_failure = (await replica_status(first.settings.postgres, standby)).lag_bytes

    await asyncio.to_thread(primary.stop, mode="immediate")  # the primary is lost
    failed = time.monotonic()
    await promote(standby)
    promoted_s = time.monotonic() - failed
    after = on(env, replica)
    two = await run_loadgen(env.settings, LoadgenConfig(seed=52, transactions=100))
    async with running_sink(after, "w2"):
        await wait_until_caught_up(after, expected_records(one, two))
    rto_s = time.monotonic() - failed
    counts = await assert_exactly_once(after, source=env.settings.postgres)
    print(  # the drill's figures, shown with pytest -s
        f"\nreplica drill: max lag under load {max(s.lag_bytes or 0 for s in seen)} bytes, "
        f"{lag_at_failure} bytes at failure (database RPO; replayed from Kafka: pipeline RPO 0); "
        f"promote {promoted_s:.1f} s, RTO to caught-up {rto_s:.1f} s; {counts['bronze']} bronze "
        "rows exact"
    )
