"""The worker's malloc arena limit (issue 23): on glibc the call is accepted, and calling it
again is harmless (the CLI may start a worker in a process that already set it)."""

from __future__ import annotations

import platform

import pytest

from streams.memory import limit_malloc_arenas


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_arena_limit_twice() -> None:
    assert limit_malloc_arenas(2) is True
    assert limit_malloc_arenas(2) is True
