"""When customers' orders leave the features' look-back: a schedule kept in the state.

Each revenue-bearing order schedules its customer for the moment it leaves the look-back
(``created_at + lookback``); ``due(now)`` takes every customer scheduled before ``now``.
The entries live in a mapping of the analytics state, keyed ``"<UTC instant>|<customer>"``
with a fixed-width instant, so the key order is time order: a ``StoredTable`` (the worker)
reads the due ones from its folder in order, without memory that grows with the orders;
plain mappings are scanned. Kept in the state, the schedule comes back with it after a
restart, instead of being rebuilt by reading every order (issue 23).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, MutableMapping
from datetime import UTC, datetime
from typing import Protocol, cast

_INSTANT = "%Y%m%dT%H%M%S.%f"


class OrderedKeys(Protocol):
    """A mapping that can list its keys below a bound in order (``StoredTable``)."""

    def keys_below(self, bound: str, limit: int | None = None) -> Iterable[str]: ...


def instant_key(moment: datetime) -> str:
    """``moment`` as a fixed-width UTC text: text order is time order."""
    return moment.astimezone(UTC).strftime(_INSTANT)


class AgeingSchedule:
    """Customers to recompute when one of their orders leaves the look-back."""

    def __init__(self, entries: MutableMapping[str, int]) -> None:
        self.entries = entries
        #: For a mapping without ``keys_below`` (a dict in tests and replays): its keys in a
        #: heap, so ``due`` does not sort them all on every tick.
        self._heap: list[str] | None = None if hasattr(entries, "keys_below") else sorted(entries)

    def add(self, at: datetime, customer_id: int) -> None:
        key = f"{instant_key(at)}|{customer_id}"
        if self._heap is not None and key not in self.entries:
            heapq.heappush(self._heap, key)
        self.entries[key] = customer_id

    def due(self, now: datetime, limit: int | None = None) -> list[int]:
        """Customers scheduled strictly before ``now``, taken off the schedule: the earliest
        ``limit`` entries at most (the rest stay due for the next call)."""
        bound = instant_key(now)
        entries = self.entries
        if self._heap is None:
            keys = list(cast(OrderedKeys, entries).keys_below(bound, limit))
        else:
            keys = []
            while self._heap and self._heap[0] < bound and (limit is None or len(keys) < limit):
                keys.append(heapq.heappop(self._heap))
        return [customer for key in keys if (customer := entries.pop(key, None)) is not None]

    def is_due(self, now: datetime) -> bool:
        """An entry is scheduled before ``now`` (a bounded ``due`` left some)."""
        bound = instant_key(now)
        if self._heap is None:
            return bool(list(cast(OrderedKeys, self.entries).keys_below(bound, 1)))
        return bool(self._heap) and self._heap[0] < bound

    def empty(self) -> bool:
        return next(iter(self.entries), None) is None
