"""The lake sink (CDC -> Delta bronze) killed at its crash points: nothing lost, nothing twice.

Workers run as subprocesses (`bitvelocity lake run`) that SIGKILL themselves at a named
point (BV_FAULT_CRASH_AT): before the Parquet write, between the Parquet write and the
Delta commit, right after the commit. A survivor then catches up. The oracle is Kafka
(every non-tombstone record exactly once in Delta, read back with deltalake and with
Polars) and the medallion sink's PostgreSQL bronze (the same rows, equal checksums).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from agents.crash_points import ENV as CRASH_ENV
from agents.lakehouse import LakeSink, lake_group
from config.settings import Settings
from oltp.loadgen import LoadgenConfig, run_loadgen
from sinks.delta.bronze import app_id, record_key, row_checksum
from sinks.delta.store import DeltaBronzeStore
from sinks.postgres.batch import EVENT_ID_NAMESPACE
from sinks.postgres.connection import connect
from sinks.postgres.tables import TABLES
from tests.faults.cli_workers import start_cli
from tests.integration.sink_env import (
    SinkEnv,
    eventually,
    expected_records,
    high_watermarks,
    kafka_records,
    running_sink,
    sink_environment,
    wait_until_caught_up,
)

CRASH_POINTS = ("after_parquet@2", "before_write@2", "after_commit@2", "after_parquet@4")


@pytest.fixture
def env(settings: Settings) -> Iterator[SinkEnv]:
    with sink_environment(settings, batch_max_records=50) as environment:
        yield environment


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    return tmp_path / "lake"


def start_lake_worker(
    env: SinkEnv, lake: Path, log: Path, worker_id: str, crash_at: str
) -> subprocess.Popen[bytes]:
    extra = {"BV_LAKE__URI": str(lake), CRASH_ENV: crash_at}
    return start_cli(["lake", "run", "--worker-id", worker_id], {**env.worker_env(), **extra}, log)


def lake_positions(env: SinkEnv, store: DeltaBronzeStore) -> dict[tuple[str, int], int | None]:
    group = lake_group(env.settings)
    positions: dict[tuple[str, int], int | None] = {}
    marks = high_watermarks(env)
    for table in TABLES:
        topic = env.settings.topics.cdc_topic(table)
        keys = [(t, p) for (t, p) in marks if t == topic]
        if not keys or store.table(table, create=False) is None:
            positions.update(dict.fromkeys(keys))
            continue
        stored = store.positions(table, [app_id(group, t, p) for t, p in keys])
        positions.update({(t, p): stored[app_id(group, t, p)] for t, p in keys})
    return positions


def delta_rows(lake: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for table in TABLES:
        path = lake / "bronze" / table
        if path.exists():
            rows += DeltaTable(str(path)).to_pyarrow_table().to_pylist()
    return rows


def uncommitted_files(lake: Path) -> set[Path]:
    """Parquet files in the tables' folders that no Delta version references."""
    committed = set()
    for table in TABLES:
        folder = lake / "bronze" / table
        if folder.exists():
            committed |= {Path(uri) for uri in DeltaTable(str(folder)).file_uris()}
    return set(lake.rglob("*.parquet")) - committed


def vacuum_all(store: DeltaBronzeStore, lake: Path) -> set[Path]:
    for table in TABLES:
        if (lake / "bronze" / table).exists():
            store.vacuum(table, timedelta(0), dry_run=False, force=True)
    return set(lake.rglob("*.parquet"))


@contextlib.contextmanager
def running_lake_sink(
    env: SinkEnv, lake: Path, worker_id: str, store: DeltaBronzeStore | None = None
) -> Iterator[LakeSink]:
    """A lake sink in a thread of this process until the block ends."""
    settings = env.settings.model_copy(
        update={"lake": env.settings.lake.model_copy(update={"uri": str(lake)})}
    )
    sink = LakeSink(settings, worker_id=worker_id, store=store)
    stop = threading.Event()
    thread = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


async def caught_up(env: SinkEnv, store: DeltaBronzeStore, timeout_s: float = 180) -> None:
    """Until the Delta log's versions reached every partition's high watermark."""
    marks = high_watermarks(env)

    async def reached() -> bool:
        stored = await asyncio.to_thread(lake_positions, env, store)
        return all(stored.get(k) == v for k, v in marks.items() if v > 0)

    await eventually(reached, timeout_s=timeout_s, what="the lake sink to catch up")


async def assert_every_record_once(env: SinkEnv, lake: Path) -> list[dict[str, object]]:
    """One Delta row per non-tombstone record on Kafka, none twice; returns the rows."""
    records = kafka_records(env)
    data_records = {key for key, tombstone in records.items() if not tombstone}
    rows = await asyncio.to_thread(delta_rows, lake)
    keys = [record_key(row) for row in rows]
    assert len(keys) == len(set(keys)), "a record landed twice in Delta"
    assert set(keys) == data_records
    return rows


@pytest.mark.timeout(600)
async def test_sigkill_at_each_crash_point_leaves_delta_with_every_record_once(
    env: SinkEnv, lake: Path, tmp_path: Path
) -> None:
    written = await run_loadgen(env.settings, LoadgenConfig(seed=31, transactions=250))
    expect = expected_records(written)

    async def published() -> bool:
        return sum(high_watermarks(env).values()) >= expect

    await eventually(published, timeout_s=120, what=f"{expect} records on Kafka")
    log = tmp_path / "lake-worker.log"
    for number, point in enumerate(CRASH_POINTS):
        worker = start_lake_worker(env, lake, log, f"crash-{number}", point)
        code = await asyncio.to_thread(worker.wait, 180)
        assert code == -signal.SIGKILL, f"{point}: exit {code}\n{log.read_text()[-3000:]}"
    orphans = await asyncio.to_thread(uncommitted_files, lake)
    assert orphans, "the after_parquet crashes left no uncommitted file behind"

    store = DeltaBronzeStore(env.settings.lake, str(lake))
    with running_lake_sink(env, lake, "survivor", store):
        await caught_up(env, store)

    # Kafka is the oracle: one Delta row per non-tombstone record, none twice.
    rows = await assert_every_record_once(env, lake)
    keys = [record_key(row) for row in rows]
    for row in rows:
        topic, partition, offset = record_key(row)
        assert row["event_id"] == str(
            uuid.uuid5(EVENT_ID_NAMESPACE, f"{topic}/{partition}/{offset}")
        )
    # Another engine reads the same table (Polars, its own Parquet reader).
    polars_keys: list[tuple[str, int, int]] = []
    for table in TABLES:
        path = lake / "bronze" / table
        if path.exists():
            frame = pl.read_delta(str(path)).select(
                "source_topic", "source_partition", "source_offset"
            )
            polars_keys += [(t, int(p), int(o)) for t, p, o in frame.iter_rows()]
    assert sorted(polars_keys) == sorted(keys)

    # The same records through the medallion sink: Delta holds exactly PostgreSQL's bronze.
    async with running_sink(env, "medallion"):
        await wait_until_caught_up(env, expect)
    connection = await connect(env.settings.postgres)
    try:
        bronze = {}
        for table in TABLES:
            for row in await connection.fetch(f"SELECT * FROM bronze.{table}"):
                bronze[record_key(row)] = row_checksum(dict(row))
    finally:
        await connection.close()
    assert {record_key(row): row_checksum(row) for row in rows} == bronze

    # Vacuum removes what the crashed writes left, and nothing a reader sees.
    left = await asyncio.to_thread(vacuum_all, store, lake)
    assert not left & orphans
    after = await asyncio.to_thread(delta_rows, lake)
    assert sorted(record_key(row) for row in after) == sorted(keys)


@pytest.mark.timeout(400)
async def test_a_second_lake_worker_joining_and_leaving_shares_without_loss(
    env: SinkEnv, lake: Path
) -> None:
    load = asyncio.create_task(
        run_loadgen(env.settings, LoadgenConfig(seed=32, transactions=1200, rate=100))
    )
    store = DeltaBronzeStore(env.settings.lake, str(lake))

    async def topics_exist() -> bool:
        return sum(high_watermarks(env).values()) > 0

    await eventually(topics_exist, timeout_s=60, what="the first CDC records")
    with running_lake_sink(env, lake, "first") as first:

        async def first_worked() -> bool:
            return first.stats.commits >= 1

        await eventually(first_worked, timeout_s=120, what="the first worker's commits")
        with running_lake_sink(env, lake, "second") as second:

            async def second_worked() -> bool:
                return second.stats.commits >= 3

            await eventually(second_worked, timeout_s=120, what="the second worker's commits")
        commits_before_leaving = first.stats.commits
        written = await load

        async def published() -> bool:
            return sum(high_watermarks(env).values()) >= expected_records(written)

        await eventually(published, timeout_s=120, what="every record on Kafka")
        await caught_up(env, store)
    assert first.stats.commits > commits_before_leaving, "first did not take partitions back"
    await assert_every_record_once(env, lake)
