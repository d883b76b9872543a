"""A job that runs between batches, at most once per interval (no thread, no timer: ticks).

The consumer loop calls ``tick()`` after each batch; the job runs when its interval has
passed. Upkeep that must not block the data path for long (a view refresh, a sweep, a lag
reading) lives in such jobs, each with one job only and a clock a test can drive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("bitvelocity.periodic")


class Periodic:
    """Runs ``job`` on ``tick()`` when ``interval_s`` has passed since its last run.

    A ``detached`` job runs as a task of its own: the loop goes on while it waits (a lag
    reading waits on the broker), a tick skips it while a run is still going, and an error
    it raised surfaces at the next tick, as it would have inline. ``settle`` waits for a run
    still going (at stop)."""

    def __init__(
        self,
        interval_s: float,
        job: Callable[[], Awaitable[None]],
        *,
        clock: Callable[[], float] = time.monotonic,
        run_at_first_tick: bool = True,
        detached: bool = False,
    ) -> None:
        self.interval_s = interval_s
        self._job = job
        self._clock = clock
        self._last = float("-inf") if run_at_first_tick else clock()
        self._detached = detached
        self._running: asyncio.Future[None] | None = None
        #: Wall seconds spent in the job, all runs together (the benchmark reports it).
        self.seconds = 0.0
        self.runs = 0

    async def tick(self) -> bool:
        """Run the job if it is due (start it, if detached); True when it did."""
        running = self._running
        if running is not None:
            if not running.done():
                return False
            self._running = None
            running.result()  # a detached run's error, raised here as an inline one would be
        now = self._clock()
        if now - self._last < self.interval_s:
            return False
        self._last = now
        if self._detached:
            self._running = asyncio.ensure_future(self._timed())
        else:
            await self._timed()
        return True

    async def settle(self) -> None:
        """Wait for a detached run still going; its error is logged, not raised (stopping)."""
        running, self._running = self._running, None
        if running is not None:
            try:
                await running
            except Exception:
                log.exception("a periodic job failed while stopping")

    async def _timed(self) -> None:
        started = time.perf_counter()
        try:
            await self._job()
        finally:
            self.seconds += time.perf_counter() - started
            self.runs += 1
