"""Drills: base backup, more load, point-in-time restore into a fresh cluster; WAL retention.

Runs on a throw-away cluster of its own (the shared one is never restarted), configured for
WAL archiving by the same ``archive_settings`` the stack writes into its server config.
After restoring to a moment between two loads, every OLTP table's row count and checksum
equals what it was at that moment. The drill prints its RPO and RTO.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from backup.cluster import LocalCluster, wait_out_of_recovery
from backup.errors import BackupNotFoundError
from backup.pgtools import binary, give_to_server_user, run_tool
from backup.wal import (
    BaseBackup,
    archive_settings,
    base_backups,
    base_for,
    restore_to_time,
    take_base_backup,
)
from backup.wal_prune import prune_wal_archive
from backup.wal_retention import RetentionPolicy
from config.settings import PostgresSettings, Settings
from oltp.loadgen import LoadgenConfig, run_loadgen
from oltp.schema import CAPTURED_TABLES, migrate_oltp
from sinks.postgres.connection import connect, ensure_database
from tests.local_resources import free_port, scratch_folder


@pytest.fixture
def root() -> Iterator[Path]:
    with scratch_folder("bv-pitr-") as folder:
        yield folder


@pytest.fixture
def primary(root: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(root / "primary" / "data", free_port())
    wal_dir = root / "wal"
    wal_dir.mkdir()
    give_to_server_user(wal_dir)
    cluster.initdb()
    cluster.write_conf(
        [*archive_settings(wal_dir), "shared_buffers = 32MB", "max_connections = 30"]
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop(mode="immediate")


async def snapshot(pg: PostgresSettings) -> dict[str, tuple[int, str]]:
    """Row count and an order-independent checksum of every OLTP table."""
    connection = await connect(pg)
    try:
        return {
            table: tuple(
                await connection.fetchrow(
                    f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                    f" FROM public.{table} t"
                )
            )
            for table in CAPTURED_TABLES
        }
    finally:
        await connection.close()


async def archived_through(pg: PostgresSettings, *, timeout_s: float) -> None:
    """Switch WAL and wait until that segment is in the archive."""
    connection = await connect(pg, "postgres")
    try:
        segment = await connection.fetchval("SELECT pg_walfile_name(pg_switch_wal())")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = await connection.fetchval("SELECT last_archived_wal FROM pg_stat_archiver")
            if done is not None and done >= segment:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"WAL segment {segment} not archived within {timeout_s} s")
    finally:
        await connection.close()


async def migrated_primary(settings: Settings, primary: LocalCluster) -> Settings:
    """``settings`` pointed at the drill's own cluster, with the OLTP schema in place."""
    pg = primary.settings(settings.postgres).model_copy(
        update={"admin_user": "postgres", "admin_password": settings.postgres.admin_password}
    )
    own = settings.model_copy(update={"postgres": pg})
    await ensure_database(pg, pg.database)
    await migrate_oltp(own)
    return own


async def test_point_in_time_restore_equals_the_snapshot_at_that_moment(
    settings: Settings, root: Path, primary: LocalCluster
) -> None:
    own = await migrated_primary(settings, primary)
    pg = own.postgres
    await run_loadgen(own, LoadgenConfig(seed=41, transactions=60))
    base = await asyncio.to_thread(take_base_backup, pg, root / "base")

    await run_loadgen(own, LoadgenConfig(seed=42, transactions=60))  # after the base backup
    target = await now_on(pg)
    at_target = await snapshot(pg)
    await run_loadgen(own, LoadgenConfig(seed=43, transactions=60))  # to be undone
    assert await snapshot(pg) != at_target
    await archived_through(pg, timeout_s=30)
    failure = time.monotonic()

    restored = LocalCluster(root / "restored" / "data", free_port())
    assert base_for(root / "base", target) == base
    try:
        await asyncio.to_thread(restore_to_time, base, root / "wal", restored, target)
        await wait_out_of_recovery(restored.settings(pg), timeout_s=60)
        rto_s = time.monotonic() - failure
        assert await snapshot(restored.settings(pg)) == at_target
    finally:
        await asyncio.to_thread(restored.stop, mode="immediate")
    print(  # the drill's figures, shown with pytest -s
        f"\nPITR drill: {sum(c for c, _ in at_target.values())} rows equal at the target; "
        f"RPO 0 to the chosen time (WAL archived through the switch; at most archive_timeout "
        f"60 s of WAL unarchived otherwise); RTO {rto_s:.1f} s"
    )


async def now_on(pg: PostgresSettings) -> datetime:
    connection = await connect(pg)
    try:
        moment: datetime = await connection.fetchval("SELECT clock_timestamp()")
        return moment
    finally:
        await connection.close()


async def start_segment_by_server(pg: PostgresSettings, base: BaseBackup) -> str:
    """The WAL file of the backup's Start-LSN in its manifest, named by the server itself."""
    manifest = json.loads((base.folder / "backup_manifest").read_text(encoding="utf-8"))
    start_lsn = manifest["WAL-Ranges"][0]["Start-LSN"]
    connection = await connect(pg, "postgres")
    try:
        return str(await connection.fetchval("SELECT pg_walfile_name($1::text::pg_lsn)", start_lsn))
    finally:
        await connection.close()


def archivecleanup_would_remove(wal_dir: Path, oldest_kept: str) -> set[str]:
    """``pg_archivecleanup -n``: PostgreSQL's own list of segments before ``oldest_kept``."""
    listed = run_tool(
        [binary("pg_archivecleanup"), "-n", str(wal_dir), oldest_kept], what="cleanup"
    )
    return {Path(line).name for line in listed.split()}


async def test_pruned_archive_still_restores_after_the_oldest_kept_backup_and_refuses_before(
    settings: Settings, root: Path, primary: LocalCluster
) -> None:
    own = await migrated_primary(settings, primary)
    pg = own.postgres
    wal_dir, base_root = root / "wal", root / "base"
    backups = []
    for seed in (51, 52, 53):  # three base backups, WAL switched and load between them
        await run_loadgen(own, LoadgenConfig(seed=seed, transactions=30))
        await archived_through(pg, timeout_s=30)
        backups.append(await asyncio.to_thread(take_base_backup, pg, base_root))
        if seed == 51:
            pruned_time = await now_on(pg)  # after the first backup, before the second
        if seed == 52:
            await run_loadgen(own, LoadgenConfig(seed=60, transactions=30))
            target = await now_on(pg)  # after the second (oldest kept) backup
            at_target = await snapshot(pg)
    await run_loadgen(own, LoadgenConfig(seed=61, transactions=30))
    await archived_through(pg, timeout_s=30)
    assert all(b.verified for b in backups)

    oldest_kept = await start_segment_by_server(pg, backups[1])
    expected = archivecleanup_would_remove(wal_dir, oldest_kept)
    assert expected  # the drill produced WAL before the oldest kept backup
    policy = RetentionPolicy(keep_backups=2, min_age=timedelta(0))
    plan = await asyncio.to_thread(prune_wal_archive, base_root, wal_dir, policy)
    pruned_segments = {f.name for f in plan.prunable if not f.name.endswith(".backup")}
    assert pruned_segments == expected
    assert [b.folder for b in base_backups(base_root)] == [b.folder for b in backups[1:]]
    assert not expected & {p.name for p in wal_dir.iterdir()}

    with pytest.raises(BackupNotFoundError, match="before the end of the oldest kept base backup"):
        base_for(base_root, pruned_time)
    base = base_for(base_root, target)
    assert base == backups[1]
    restored = LocalCluster(root / "restored" / "data", free_port())
    try:
        await asyncio.to_thread(restore_to_time, base, wal_dir, restored, target)
        await wait_out_of_recovery(restored.settings(pg), timeout_s=60)
        assert await snapshot(restored.settings(pg)) == at_target
    finally:
        await asyncio.to_thread(restored.stop, mode="immediate")
