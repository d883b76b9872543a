"""The chaos run's fault schedule: seeded, every kind once per round, no slow fault at the end."""

from __future__ import annotations

import random

from chaos.faults import FAULTS, SLOW, SLOW_MIN_REMAINING_S, FaultSchedule


def test_the_same_seed_gives_the_same_schedule() -> None:
    one, two = FaultSchedule(random.Random(5)), FaultSchedule(random.Random(5))
    assert [one.next_kind() for _ in range(30)] == [two.next_kind() for _ in range(30)]


def test_each_round_meets_every_kind_once() -> None:
    schedule = FaultSchedule(random.Random(1))
    for _ in range(3):
        assert sorted(schedule.next_kind() for _ in FAULTS) == sorted(FAULTS)


def test_near_the_end_only_quick_faults_are_started() -> None:
    schedule = FaultSchedule(random.Random(2))
    late = [schedule.next_kind(SLOW_MIN_REMAINING_S - 1) for _ in range(40)]
    assert not set(late) & SLOW
    assert len(set(late)) > 1  # not one quick fault over and over
