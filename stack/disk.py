"""The disk part of ``bitvelocity stack status``: WAL archive, whole state folder, slots.

Per-service state sizes are a column of the status table (``Stack.status(sizes=True)``);
this adds what belongs to no single service, and the replication slot warnings.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import asdict, dataclass, field

import asyncpg

from config.errors import ConfigurationError
from config.settings import Settings
from observability.disk import DiskUsageCollector, existing_parent, folder_bytes
from observability.slots import SlotRetention, oversized, slot_retention, slot_warning
from sinks.postgres.connection import DatabaseUnavailableError
from stack.manager import Stack

#: Why the slot check may fail without failing ``stack status``.
_UNCHECKED = (DatabaseUnavailableError, ConfigurationError, asyncpg.PostgresError, OSError)


@dataclass(frozen=True)
class DiskReport:
    state_dir: str
    state_bytes: int
    wal_archive_dir: str
    wal_archive_bytes: int
    wal_archive_files: int
    filesystem_used_ratio: float
    slots: list[SlotRetention] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def disk_report(stack: Stack, *, postgres_ready: bool) -> DiskReport:
    settings = stack.settings
    archive = stack.wal_archive_dir()
    files = sum(1 for p in archive.iterdir() if p.is_file()) if archive.is_dir() else 0
    usage = shutil.disk_usage(existing_parent(settings.stack.state_dir))
    threshold = settings.monitoring.slot_retained_wal_warn_bytes
    slots: list[SlotRetention] = []
    warnings = []
    if postgres_ready:
        try:
            slots = asyncio.run(slot_retention(settings.postgres))
        except (
            DatabaseUnavailableError,
            ConfigurationError,
            asyncpg.PostgresError,
            OSError,
        ) as exc:
            warnings.append(f"replication slots not checked: {exc}")
    warnings += [slot_warning(s, threshold) for s in oversized(slots, threshold)]
    return DiskReport(
        state_dir=str(settings.stack.state_dir),
        state_bytes=folder_bytes(settings.stack.state_dir),
        wal_archive_dir=str(archive),
        wal_archive_bytes=folder_bytes(archive),
        wal_archive_files=files,
        filesystem_used_ratio=(usage.total - usage.free) / usage.total if usage.total else 0.0,
        slots=slots,
        warnings=warnings,
    )


def human_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def report_lines(report: DiskReport) -> list[str]:
    lines = [
        f"WAL archive: {human_bytes(report.wal_archive_bytes)} in {report.wal_archive_files} "
        f"files ({report.wal_archive_dir}); prune with `bitvelocity backup prune`",
        f"state folder: {human_bytes(report.state_bytes)} ({report.state_dir}); its file "
        f"system is {report.filesystem_used_ratio:.0%} full",
    ]
    if report.slots:
        held = ", ".join(f"{s.name} {human_bytes(s.retained_bytes)}" for s in report.slots)
        lines.append(f"replication slots retain: {held}")
    return lines


def disk_usage_collector(settings: Settings) -> DiskUsageCollector:
    """The worker's collector of the local stack's state sizes and free disk space."""
    stack = Stack(settings)
    return DiskUsageCollector(
        stack.state_folders(),
        stack.wal_archive_dir(),
        cache_s=settings.monitoring.disk_usage_cache_s,
    )
