"""The worker's memory settings. The malloc arena limit (issue 23): on glibc the call is
accepted, and calling it again is harmless (the CLI may start a worker in a process that
already set it). The garbage collector (issue 18): its young generation is sized for a sink,
and what the worker built before running is frozen out of collections."""

from __future__ import annotations

import gc
import platform
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from config.settings import WorkerSettings
from streams.memory import (
    garbage_collector_of_a_worker,
    limit_malloc_arenas,
    tune_garbage_collector,
)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_arena_limit_twice() -> None:
    assert limit_malloc_arenas(2) is True
    assert limit_malloc_arenas(2) is True


@pytest.fixture
def collector_state() -> Iterator[None]:
    """The interpreter's collector settings, restored after the test."""
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


@pytest.mark.usefixtures("collector_state")
def test_the_worker_collects_the_young_generation_every_gen0_threshold_allocations() -> None:
    _, gen1, gen2 = gc.get_threshold()
    kept = [[index] for index in range(1_000)]  # what a worker builds before it runs
    tune_garbage_collector(50_000)
    assert gc.get_threshold() == (50_000, gen1, gen2)
    assert gc.get_freeze_count() >= len(kept)  # out of every later collection


@pytest.mark.usefixtures("collector_state")
def test_no_threshold_leaves_the_interpreter_defaults() -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    tune_garbage_collector(None)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen


def test_the_threshold_setting_refuses_less_than_the_interpreter_default() -> None:
    with pytest.raises(ValidationError):
        WorkerSettings(gc_gen0_threshold=100)
    assert WorkerSettings().gc_gen0_threshold == 50_000


@pytest.mark.usefixtures("collector_state")
def test_the_harness_setting_is_undone_after_its_block() -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    with garbage_collector_of_a_worker(50_000):
        assert gc.get_threshold()[0] == 50_000
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() <= frozen
