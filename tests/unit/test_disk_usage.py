"""State sizes and free space exported for the disk alerts; slot warnings by threshold.

Sizes are written by the test (known byte counts), free space compared with os.statvfs.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry

from observability.disk import (
    DISK_FAMILIES,
    DiskUsageCollector,
    folder_bytes,
    register_disk_usage,
)
from observability.slots import SlotRetention, oversized, slot_warning


def write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def test_folder_bytes_counts_nested_files_and_skips_the_excluded_folder(tmp_path: Path) -> None:
    write(tmp_path / "pg" / "data" / "base" / "1", 1000)
    write(tmp_path / "pg" / "server.log", 234)
    write(tmp_path / "pg" / "wal-archive" / "000000010000000000000001", 5000)
    (tmp_path / "pg" / "link").symlink_to(tmp_path / "pg" / "wal-archive")
    assert folder_bytes(tmp_path / "pg", exclude=(tmp_path / "pg" / "wal-archive",)) == 1234
    assert folder_bytes(tmp_path / "pg") == 6234
    assert folder_bytes(tmp_path / "absent") == 0


def test_collector_exports_sizes_and_capacity_and_reuses_a_measurement(tmp_path: Path) -> None:
    write(tmp_path / "kafka" / "log", 300)
    write(tmp_path / "postgres" / "data", 700)
    write(tmp_path / "postgres" / "wal-archive" / "seg", 16)
    now = [0.0]
    collector = DiskUsageCollector(
        {"kafka": tmp_path / "kafka", "postgres": tmp_path / "postgres"},
        tmp_path / "postgres" / "wal-archive",
        cache_s=60,
        clock=lambda: now[0],
    )
    registry = CollectorRegistry()
    register_disk_usage(registry, collector)
    register_disk_usage(registry, collector)  # a second registration is a no-op
    sample = registry.get_sample_value
    assert sample("bv_state_bytes", {"service": "kafka"}) == 300
    assert sample("bv_state_bytes", {"service": "postgres"}) == 700
    assert sample("bv_wal_archive_bytes") == 16
    stats = os.statvfs(tmp_path)
    path = {"path": str(tmp_path / "kafka")}
    assert sample("bv_filesystem_size_bytes", path) == stats.f_blocks * stats.f_frsize
    assert sample("bv_filesystem_avail_bytes", path) is not None
    assert {f.name for f in registry.collect()} == set(DISK_FAMILIES)

    write(tmp_path / "kafka" / "log2", 100)
    now[0] = 30.0
    assert sample("bv_state_bytes", {"service": "kafka"}) == 300  # cached
    now[0] = 61.0
    assert sample("bv_state_bytes", {"service": "kafka"}) == 400  # measured again


def slot(name: str, retained: int, *, active: bool = True) -> SlotRetention:
    return SlotRetention(name, "bitvelocity", active, retained)


def test_only_slots_over_the_threshold_are_reported_largest_first() -> None:
    slots = [slot("small", 10), slot("big", 3000, active=False), slot("mid", 2000)]
    assert [s.name for s in oversized(slots, 1000)] == ["big", "mid"]
    assert oversized(slots, 5000) == []


def test_slot_warning_names_the_slot_its_size_and_the_way_out() -> None:
    message = slot_warning(slot("debezium_old", 2_500_000_000, active=False), 1_000_000_000)
    assert "debezium_old" in message
    assert "2,500 MB" in message
    assert "INACTIVE" in message
    assert "pg_drop_replication_slot('debezium_old')" in message
