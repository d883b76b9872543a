"""Phases of a benchmark that always end: each runs in a daemon thread under a deadline.

A phase that outlives its deadline (a store wedged, a consumer never assigned, a count that
cannot be reached) raises ``PhaseStalledError`` naming the phase and its progress, after
printing the stacks of every thread (what it was waiting on) to stderr. The stuck thread is
a daemon: it cannot keep the process alive, and the caller exits without waiting for it.
"""

from __future__ import annotations

import faulthandler
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


class PhaseStalledError(RuntimeError):
    """A benchmark phase did not finish within its deadline."""


@dataclass
class _Outcome(Generic[T]):
    value: T | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def run_phase(
    name: str,
    work: Callable[[], T],
    *,
    timeout_s: float,
    progress: Callable[[], str] = lambda: "no progress figure",
    poll_s: float = 0.2,
) -> T:
    """``work()`` in a daemon thread; its result, its exception, or ``PhaseStalledError``."""
    outcome: _Outcome[T] = _Outcome()

    def target() -> None:
        try:
            outcome.value = work()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome.error = exc
        finally:
            outcome.done.set()

    started = time.monotonic()
    threading.Thread(target=target, name=f"phase-{name}", daemon=True).start()
    while not outcome.done.wait(poll_s):
        if time.monotonic() - started > timeout_s:
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            raise PhaseStalledError(
                f"benchmark phase '{name}' did not finish in {timeout_s:.0f} s "
                f"({progress()}); thread stacks printed above"
            )
    if outcome.error is not None:
        raise outcome.error
    return outcome.value  # type: ignore[return-value]  # set when ``work`` returned
