"""The chaos run's retention: one window edge at a chosen moment, passed to workers intact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chaos.env import crossing_retention, iso_duration
from config.settings import WindowSettings


def test_crossing_retention_puts_a_window_edge_at_the_moment() -> None:
    moment = datetime(2026, 12, 6, 3, 17, 42, 123456, tzinfo=UTC)
    retention = crossing_retention(moment, 10)
    assert timedelta(days=10) <= retention < timedelta(days=10, hours=1)
    window_end = moment - retention
    assert (window_end.minute, window_end.second, window_end.microsecond) == (0, 0, 0)
    daily = crossing_retention(moment, 28, timedelta(days=4))
    assert (moment - daily - datetime(1970, 1, 1, tzinfo=UTC)) % timedelta(days=4) == timedelta(0)


def test_iso_duration_is_read_back_exactly_by_the_settings() -> None:
    retention = timedelta(days=10, seconds=3461, microseconds=123456)
    parsed = WindowSettings.model_validate({"retention": iso_duration(retention)})
    assert parsed.retention == retention
