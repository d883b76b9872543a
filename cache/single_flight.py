"""Single-flight: concurrent misses of one key in a process share one load (no stampede).

A flight can be ``forget``-ten when its key is invalidated: callers arriving later start
a fresh load instead of joining one that may have read the value before the change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._flights: dict[K, asyncio.Future[V]] = {}
        self.loads = 0

    async def run(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The result of ``load()``, shared with every concurrent caller for ``key``."""
        flight = self._flights.get(key)
        if flight is not None:
            return await asyncio.shield(flight)
        flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        self.loads += 1
        try:
            result = await load()
        except asyncio.CancelledError:
            flight.cancel()
            raise
        except Exception as exc:
            flight.set_exception(exc)
            flight.exception()  # retrieved: no "never retrieved" warning without joiners
            raise
        else:
            flight.set_result(result)
            return result
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]

    def forget(self, key: K) -> None:
        """Later callers for ``key`` start their own load (the running one finishes alone)."""
        self._flights.pop(key, None)

    def forget_all(self) -> None:
        self._flights.clear()
