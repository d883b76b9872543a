"""A job that runs between batches, at most once per interval (no thread, no timer task).

The consumer loop calls ``tick()`` after each batch; the job runs when its interval has
passed. Upkeep that must not block the data path for long (a view refresh, a sweep, a lag
reading) lives in such jobs, each with one job only and a clock a test can drive.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable


class Periodic:
    """Runs ``job`` on ``tick()`` when ``interval_s`` has passed since its last run."""

    def __init__(
        self,
        interval_s: float,
        job: Callable[[], Awaitable[None]],
        *,
        clock: Callable[[], float] = time.monotonic,
        run_at_first_tick: bool = True,
    ) -> None:
        self.interval_s = interval_s
        self._job = job
        self._clock = clock
        self._last = float("-inf") if run_at_first_tick else clock()
        #: Wall seconds spent in the job, all runs together (the benchmark reports it).
        self.seconds = 0.0
        self.runs = 0

    async def tick(self) -> bool:
        """Run the job if it is due; True when it ran."""
        now = self._clock()
        if now - self._last < self.interval_s:
            return False
        self._last = now
        started = time.perf_counter()
        try:
            await self._job()
        finally:
            self.seconds += time.perf_counter() - started
            self.runs += 1
        return True
