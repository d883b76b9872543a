"""Event-time tumbling windows and watermarks: the pure arithmetic under every windowed table.

Windows are aligned to the Unix epoch in UTC and half-open, ``[start, end)``, so every
instant belongs to exactly one window of a given size. The watermark of a set of
partitions is the *minimum* of their newest event times: a window may only be called
final once every partition has moved past it (an idle partition holds it back until a
heartbeat advances it). Nothing here reads a clock: time is always passed in.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class NaiveDatetimeError(ValueError):
    """A datetime without a timezone reached window arithmetic: its instant is ambiguous."""


def _require_aware(moment: datetime, what: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise NaiveDatetimeError(f"{what} {moment.isoformat()} has no timezone; use UTC")


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """A half-open event-time interval ``[start, end)``."""

    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def closes_at(self, grace: timedelta) -> datetime:
        """The watermark at which this window becomes final."""
        return self.end + grace


def tumbling_window(event_time: datetime, size: timedelta) -> Window:
    """The window of ``size`` that contains ``event_time`` (epoch-aligned, UTC)."""
    _require_aware(event_time, "event time")
    if size <= timedelta(0):
        raise ValueError(f"window size must be positive, got {size}")
    offset = (event_time - EPOCH) % size
    start = (event_time - offset).astimezone(UTC)
    return Window(start, start + size)


def is_final(window: Window, watermark: datetime | None, grace: timedelta) -> bool:
    """True once the watermark has passed the window's end plus the grace period."""
    return watermark is not None and watermark >= window.closes_at(grace)


def is_beyond_retention(window: Window, watermark: datetime | None, retention: timedelta) -> bool:
    """True when a change to ``window`` is too old to correct (it goes to late-events)."""
    return watermark is not None and watermark >= window.end + retention


@dataclass
class Watermarks:
    """Newest event time per partition; the watermark is the minimum over all partitions.

    Partitions must be declared (``assign``) so that one that has seen nothing yet holds
    the watermark back instead of being silently ignored.
    """

    _newest: dict[Hashable, datetime | None] = field(default_factory=dict)

    def assign(self, partition: Hashable) -> None:
        self._newest.setdefault(partition, None)

    def revoke(self, partition: Hashable) -> None:
        self._newest.pop(partition, None)

    def partitions(self) -> list[Hashable]:
        return list(self._newest)

    def newest(self, partition: Hashable) -> datetime | None:
        """The newest event time seen on ``partition`` (None: nothing yet, or not assigned)."""
        return self._newest.get(partition)

    def observe(self, partition: Hashable, event_time: datetime) -> None:
        """Record an event (or a heartbeat) on ``partition``; watermarks never move back."""
        _require_aware(event_time, "event time")
        current = self._newest.get(partition)
        if current is None or event_time > current:
            self._newest[partition] = event_time

    def current(self) -> datetime | None:
        """The watermark, or None while any assigned partition has seen nothing."""
        if not self._newest:
            return None
        values = list(self._newest.values())
        if any(value is None for value in values):
            return None
        return min(value for value in values if value is not None)
