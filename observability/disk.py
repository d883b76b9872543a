"""How much disk the stack's state takes, for ``stack status`` and Prometheus.

A full disk stops PostgreSQL, Kafka and the pipeline together, so the size of each
service's state folder, of the WAL archive and the free space of their file systems are
visible in ``bitvelocity stack status`` and exported as ``bv_state_bytes{service}``,
``bv_wal_archive_bytes``, ``bv_filesystem_size_bytes{path}`` and
``bv_filesystem_avail_bytes{path}`` (alerts.yml fires on them before 85 %). Walking a
folder tree of a few GB costs tens of milliseconds to a second, so the collector reuses a
measurement for ``BV_MONITORING__DISK_USAGE_CACHE_S``; free space (one ``statvfs``) is
always fresh.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: The families the collector exports (gauges).
DISK_FAMILIES = (
    "bv_state_bytes",
    "bv_wal_archive_bytes",
    "bv_filesystem_size_bytes",
    "bv_filesystem_avail_bytes",
)


def folder_bytes(root: Path, *, exclude: tuple[Path, ...] = ()) -> int:
    """Bytes of the regular files under ``root`` (0 when absent); symlinks are not followed.

    Files vanishing during the walk (Kafka deleting a segment) are skipped, not errors.
    """
    skipped = {str(p) for p in exclude}
    total = 0
    pending = [str(root)]
    while pending:
        folder = pending.pop()
        if folder in skipped:
            continue
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def existing_parent(path: Path) -> Path:
    """``path`` or its nearest existing parent (for ``statvfs`` of a folder not made yet)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


class DiskUsageCollector(Collector):
    """Exports state folder sizes (cached) and file system capacity (fresh) at scrape time."""

    def __init__(
        self,
        folders: Mapping[str, Path],
        wal_archive: Path | None,
        *,
        cache_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folders = dict(folders)
        self.wal_archive = wal_archive
        self.cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._measured_at: float | None = None
        self._sizes: dict[str, int] = {}
        self._archive_bytes = 0

    def _measure(self) -> tuple[dict[str, int], int]:
        with self._lock:
            now = self._clock()
            if self._measured_at is None or now - self._measured_at >= self.cache_s:
                archive = (self.wal_archive,) if self.wal_archive else ()
                self._sizes = {
                    name: folder_bytes(path, exclude=archive) for name, path in self.folders.items()
                }
                self._archive_bytes = folder_bytes(self.wal_archive) if self.wal_archive else 0
                self._measured_at = now
            return dict(self._sizes), self._archive_bytes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sizes, archive_bytes = self._measure()
        state = GaugeMetricFamily(
            "bv_state_bytes", "Bytes of each stack service's state folder.", labels=["service"]
        )
        for name, size in sorted(sizes.items()):
            state.add_metric([name], size)
        yield state
        yield GaugeMetricFamily(
            "bv_wal_archive_bytes", "Bytes of archived PostgreSQL WAL.", value=archive_bytes
        )
        capacity = GaugeMetricFamily(
            "bv_filesystem_size_bytes", "Size of a file system holding state.", labels=["path"]
        )
        avail = GaugeMetricFamily(
            "bv_filesystem_avail_bytes",
            "Bytes still available to unprivileged writers on that file system.",
            labels=["path"],
        )
        for path in self.watched_paths():
            usage = shutil.disk_usage(existing_parent(path))
            capacity.add_metric([str(path)], usage.total)
            avail.add_metric([str(path)], usage.free)
        yield capacity
        yield avail

    def watched_paths(self) -> list[Path]:
        """One path per distinct file system (by device) among the folders and the archive."""
        seen: dict[int, Path] = {}
        candidates = [*self.folders.values(), *([self.wal_archive] if self.wal_archive else [])]
        for path in candidates:
            device = existing_parent(path).stat().st_dev
            seen.setdefault(device, path)
        return list(seen.values())


def register_disk_usage(registry: CollectorRegistry, collector: DiskUsageCollector) -> None:
    """Add ``collector`` to ``registry`` once (a second worker start in-process is a no-op)."""
    if "bv_state_bytes" not in getattr(registry, "_names_to_collectors", {}):
        registry.register(collector)
