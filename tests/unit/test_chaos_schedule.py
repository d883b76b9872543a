"""The chaos run's fault schedule: seeded, every kind once per round, no slow fault at the end;
the plan of the schema-change fault."""

from __future__ import annotations

import random
import re

from chaos.faults import (
    FAULTS,
    SCHEMA_WIDENINGS,
    SLOW,
    SLOW_MIN_REMAINING_S,
    FaultSchedule,
    schema_change_plan,
)


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


def test_schema_changes_add_a_column_then_widen_each_type_once_then_only_add() -> None:
    plans = [schema_change_plan(step) for step in range(8)]
    widenings = [plan for plan in plans if " TYPE " in plan[0]]
    assert widenings == [[sql] for sql in SCHEMA_WIDENINGS]
    assert [" TYPE " in plan[0] for plan in plans[:4]] == [False, True, False, True]
    added = [plan for plan in plans if " ADD COLUMN " in plan[0]]
    assert len(added) == len(plans) - len(SCHEMA_WIDENINGS)
    columns = [re.search(r"ADD COLUMN (\w+)", alter).group(1) for alter, _ in added]
    assert len(set(columns)) == len(columns)  # every injection a column of its own
    for (alter, fill), column in zip(added, columns, strict=True):
        table = alter.split()[2]
        assert fill.startswith(f"UPDATE {table} SET {column} = ")  # its values travel too
