"""The benchmark's pre-flight check of free disk space (``bench/disk_guard.py``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.disk_guard import InsufficientDiskError, require_free_space


def usage_with(free_bytes: int, seen: list[Path]) -> object:
    def usage(path: Path) -> SimpleNamespace:
        seen.append(path)
        return SimpleNamespace(total=100 * 10**9, used=100 * 10**9 - free_bytes, free=free_bytes)

    return usage


def test_a_nearly_full_disk_refuses_with_the_way_out(tmp_path: Path) -> None:
    seen: list[Path] = []
    with pytest.raises(InsufficientDiskError) as refused:
        require_free_space(tmp_path / "state", 5.0, usage_with(700 * 10**6, seen))
    message = str(refused.value)
    assert "only 0.7 GB free" in message
    assert "at least 5 GB" in message
    assert "bitvelocity backup base" in message
    assert "bitvelocity backup prune" in message
    assert "--min-free-gb 0" in message
    assert seen == [tmp_path]  # the state folder does not exist yet: its parent is measured


def test_enough_space_or_a_zero_minimum_passes(tmp_path: Path) -> None:
    seen: list[Path] = []
    require_free_space(tmp_path, 5.0, usage_with(5 * 10**9, seen))
    assert seen == [tmp_path]
    require_free_space(tmp_path, 0, usage_with(0, seen))
    assert seen == [tmp_path]  # a zero minimum does not even measure
