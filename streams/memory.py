"""The worker process's memory: fewer malloc arenas, and a garbage collector sized for a sink.

glibc gives each thread that allocates its own arena, up to eight per core. A worker has
a dozen threads that allocate (librdkafka's, RocksDB's, the runtime's consumer thread,
executor threads); memory one of them frees stays in its arena, where another thread
cannot reuse it. Measured on the analytics-scale benchmark (issue 23): arenas of 40-60 MB
each, which count in the worker's RSS. Two arenas is the usual setting for such processes
(``MALLOC_ARENA_MAX=2``), set here because an environment variable must be there before
the interpreter starts and the CLI cannot rely on it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("bitvelocity.worker")

#: glibc's mallopt parameter for the arena limit (malloc.h: ``#define M_ARENA_MAX -8``).
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas; call before the worker starts its threads. False where
    the C library is not glibc (nothing changes there)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    done = bool(mallopt(_M_ARENA_MAX, arenas))
    if not done:
        log.debug("mallopt(M_ARENA_MAX) refused")
    return done


def tune_garbage_collector(gen0_threshold: int | None) -> None:
    """Freeze what exists now and collect the young generation every ``gen0_threshold``
    container allocations (``WorkerSettings.gc_gen0_threshold``; None: leave the defaults).

    Call it when the process has built what it keeps (imports, settings, a benchmark's
    input): ``gc.freeze`` moves those objects out of every later collection. Memory held in
    reference cycles is freed less often; everything else still goes by reference count.
    """
    if gen0_threshold is None:
        return
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


@contextmanager
def garbage_collector_of_a_worker(gen0_threshold: int | None) -> Iterator[None]:
    """``tune_garbage_collector`` for the block only; the interpreter's thresholds are
    restored and the frozen objects thawed afterwards (the benchmark harness, run by a
    test inside pytest's process)."""
    thresholds = gc.get_threshold()
    tune_garbage_collector(gen0_threshold)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
