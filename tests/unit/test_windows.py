"""Tumbling windows and watermarks: alignment, membership, finality and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tables.windows import (
    NaiveDatetimeError,
    Watermarks,
    Window,
    is_beyond_retention,
    is_final,
    tumbling_window,
)

HOUR = timedelta(hours=1)
# hypothesis takes naive bounds and attaches the timezone itself.
aware = st.datetimes(
    min_value=datetime(1971, 1, 1),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)
sizes = st.sampled_from([timedelta(seconds=1), timedelta(minutes=5), HOUR, timedelta(days=1)])


@given(moment=aware, size=sizes)
def test_every_instant_falls_in_exactly_its_aligned_window(
    moment: datetime, size: timedelta
) -> None:
    window = tumbling_window(moment, size)
    assert window.contains(moment)
    assert window.end - window.start == size
    assert (window.start - datetime(1970, 1, 1, tzinfo=UTC)) % size == timedelta(0)
    assert not tumbling_window(window.end, size).contains(moment)


def test_hour_window_of_a_known_instant() -> None:
    window = tumbling_window(datetime(2026, 3, 1, 10, 59, 59, 999999, tzinfo=UTC), HOUR)
    assert window == Window(
        datetime(2026, 3, 1, 10, tzinfo=UTC), datetime(2026, 3, 1, 11, tzinfo=UTC)
    )


def test_other_timezones_map_to_the_same_utc_window() -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2026, 3, 1, 12, 30, tzinfo=plus_two)  # 10:30 UTC
    assert tumbling_window(local, HOUR).start == datetime(2026, 3, 1, 10, tzinfo=UTC)


def test_naive_event_time_is_refused() -> None:
    with pytest.raises(NaiveDatetimeError):
        tumbling_window(datetime(2026, 3, 1, 10, 30), HOUR)  # noqa: DTZ001 - the point


def test_window_is_final_only_after_end_plus_grace() -> None:
    window = tumbling_window(datetime(2026, 3, 1, 10, 30, tzinfo=UTC), HOUR)
    grace = timedelta(minutes=5)
    assert not is_final(window, None, grace)
    assert not is_final(window, datetime(2026, 3, 1, 11, 4, 59, tzinfo=UTC), grace)
    assert is_final(window, datetime(2026, 3, 1, 11, 5, tzinfo=UTC), grace)


def test_retention_boundary_sends_older_changes_to_late_events() -> None:
    window = tumbling_window(datetime(2026, 3, 1, 10, 30, tzinfo=UTC), HOUR)
    retention = timedelta(days=35)
    assert not is_beyond_retention(window, window.end + retention - timedelta(seconds=1), retention)
    assert is_beyond_retention(window, window.end + retention, retention)


def test_watermark_waits_for_every_assigned_partition() -> None:
    marks = Watermarks()
    marks.assign(0)
    marks.assign(1)
    marks.observe(0, datetime(2026, 3, 1, 12, tzinfo=UTC))
    assert marks.current() is None  # partition 1 has said nothing yet
    marks.observe(1, datetime(2026, 3, 1, 11, tzinfo=UTC))
    assert marks.current() == datetime(2026, 3, 1, 11, tzinfo=UTC)


def test_watermark_never_moves_backwards_and_forgets_revoked_partitions() -> None:
    marks = Watermarks()
    marks.assign("p0")
    marks.assign("p1")
    marks.observe("p0", datetime(2026, 3, 1, 12, tzinfo=UTC))
    marks.observe("p1", datetime(2026, 3, 1, 9, tzinfo=UTC))
    marks.observe("p1", datetime(2026, 3, 1, 8, tzinfo=UTC))  # out of order: ignored
    assert marks.current() == datetime(2026, 3, 1, 9, tzinfo=UTC)
    marks.revoke("p1")
    assert marks.current() == datetime(2026, 3, 1, 12, tzinfo=UTC)


@given(times=st.lists(aware, min_size=1, max_size=30))
def test_single_partition_watermark_is_the_newest_event(times: list[datetime]) -> None:
    marks = Watermarks()
    marks.assign(0)
    for moment in times:
        marks.observe(0, moment)
    assert marks.current() == max(times)
