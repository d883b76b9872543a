"""Refuse to start a benchmark on a nearly full disk.

A full ``bitvelocity bench`` run writes gigabytes into PostgreSQL, and the stack archives
all of that WAL (docs/decisions/0019). An archive that nothing pruned filled this machine's
disk during a run: PostgreSQL refused writes, the Kafka broker stopped, and the run left
its topics behind. Checking the free space first turns that into one clear line.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from config.errors import ConfigurationError
from observability.disk import existing_parent


class InsufficientDiskError(ConfigurationError):
    """Less free space under the stack's state folder than a benchmark run needs."""


class _Usage(Protocol):
    @property
    def free(self) -> int: ...


def require_free_space(
    state_dir: Path,
    min_free_gb: float,
    usage: Callable[[Path], _Usage] = shutil.disk_usage,
) -> None:
    """Raise ``InsufficientDiskError`` when the file system of ``state_dir`` has less than
    ``min_free_gb`` GB free (0 turns the check off)."""
    if min_free_gb <= 0:
        return
    free = usage(existing_parent(state_dir)).free
    if free >= min_free_gb * 1e9:
        return
    raise InsufficientDiskError(
        f"only {free / 1e9:.1f} GB free on the file system of {state_dir}, and a benchmark "
        f"run wants at least {min_free_gb:g} GB (its PostgreSQL WAL is archived). Free "
        "space with `bitvelocity backup base` (twice on a stack that never took one) and "
        "then `bitvelocity backup prune`, or pass --min-free-gb 0 to run anyway"
    )
