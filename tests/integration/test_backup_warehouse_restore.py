"""Drill: the warehouse is restored from a logical backup while Kafka still holds later records.

The offsets table is restored with the rows, so the sink resumes from the backup's offsets,
replays what came after, and bronze ends with exactly one row per record (I1), silver equal to
the source (I3). The drill prints its recovery figures (RPO of the database alone, RTO).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backup.logical import create_backup, list_backups, restore_backup, verify_backup
from config.settings import Settings
from oltp.loadgen import LoadgenConfig, run_loadgen
from sinks.postgres.connection import connect
from tests.integration.sink_env import (
    SinkEnv,
    assert_exactly_once,
    expected_records,
    running_sink,
    sink_environment,
    stored_offsets,
    wait_until_caught_up,
)


@pytest.fixture
def env(settings: Settings, tmp_path: Path) -> Iterator[SinkEnv]:
    with sink_environment(settings, batch_max_records=100) as environment:
        backup = environment.settings.backup.model_copy(
            update={"archive_dir": tmp_path / "backups", "retention": 2}
        )
        yield SinkEnv(
            environment.settings.model_copy(update={"backup": backup}), environment.run_id
        )


async def bronze_rows(env: SinkEnv) -> int:
    connection = await connect(env.settings.postgres)
    try:
        return int(
            await connection.fetchval(
                "SELECT (SELECT count(*) FROM bronze.orders) "
                "+ (SELECT count(*) FROM bronze.customers) "
                "+ (SELECT count(*) FROM bronze.order_items)"
            )
        )
    finally:
        await connection.close()


async def test_restored_warehouse_resumes_from_its_offsets_and_bronze_ends_exact(
    env: SinkEnv,
) -> None:
    one = await run_loadgen(env.settings, LoadgenConfig(seed=31, transactions=120))
    async with running_sink(env):
        await wait_until_caught_up(env, expected_records(one))
    manifest = await asyncio.to_thread(create_backup, env.settings)
    backup_done = time.monotonic()
    offsets_at_backup = await stored_offsets(env)
    rows_at_backup = await bronze_rows(env)
    assert [m.name for m in list_backups(env.settings)] == [manifest.name]
    assert {
        d.part for d in (await asyncio.to_thread(verify_backup, env.settings, manifest.name)).dumps
    } == {"oltp", "warehouse"}

    two = await run_loadgen(env.settings, LoadgenConfig(seed=32, transactions=120))
    async with running_sink(env, "w2"):
        await wait_until_caught_up(env, expected_records(one, two))
    assert await bronze_rows(env) > rows_at_backup
    lost_window_s = time.monotonic() - backup_done

    started = time.monotonic()
    await asyncio.to_thread(restore_backup, env.settings, manifest.name, parts=("warehouse",))
    restored_s = time.monotonic() - started
    assert await stored_offsets(env) == offsets_at_backup
    assert await bronze_rows(env) == rows_at_backup

    async with running_sink(env, "w3"):
        await wait_until_caught_up(env, expected_records(one, two))
    rto_s = time.monotonic() - started
    counts = await assert_exactly_once(env)
    print(  # the drill's figures, shown with pytest -s
        f"\nwarehouse restore drill: {counts['bronze']} bronze rows exact; database-only RPO "
        f"{lost_window_s:.1f} s of writes (all replayed from Kafka: pipeline RPO 0); "
        f"restore {restored_s:.1f} s, RTO to caught-up {rto_s:.1f} s"
    )
