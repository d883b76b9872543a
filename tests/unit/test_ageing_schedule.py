"""The ageing schedule: customers come due strictly before ``now``, in time order, once.

Invariant: the same answers over a plain dict (heap) and over a ``StoredTable`` whose
committed entries are in a real RocksDB folder (read in key order, which is time order),
including entries still pending a commit.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rocksdict import Rdict

from tables.ageing import AgeingSchedule, instant_key
from tables.stored import StoredTable
from tables.tracked import Dirty
from tests.unit.state_folder import commit, state_folder, stored_tables

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Rdict]:
    with state_folder(tmp_path / "state") as db:
        yield db


def stored(folder: Rdict, dirty: Dirty) -> dict[str, StoredTable[Any, Any]]:
    return stored_tables(folder, dirty, "ageing")


def fill(entries: MutableMapping[str, int]) -> AgeingSchedule:
    schedule = AgeingSchedule(entries)
    schedule.add(T0 + timedelta(days=10), 7)
    schedule.add(T0 + timedelta(days=2), 3)
    schedule.add(T0 + timedelta(days=2), 3)  # the same order again: one entry
    schedule.add(T0 + timedelta(days=2, microseconds=1), 12)
    schedule.add(T0 + timedelta(days=5), 5)
    return schedule


def test_instant_keys_sort_in_time_order_across_years_and_microseconds() -> None:
    moments = [T0 + timedelta(days=d, microseconds=m) for d in (0, 1, 400) for m in (0, 7)]
    assert sorted(moments, key=instant_key) == moments


def test_a_dict_schedule_gives_customers_due_strictly_before_now_once() -> None:
    schedule = fill({})
    assert schedule.due(T0 + timedelta(days=2)) == []  # strictly before
    assert schedule.due(T0 + timedelta(days=6)) == [3, 12, 5]
    assert schedule.due(T0 + timedelta(days=6)) == []
    assert schedule.due(T0 + timedelta(days=30)) == [7]
    assert schedule.empty()


def test_a_stored_schedule_reads_its_folder_in_time_order_with_pending_entries(
    folder: Rdict,
) -> None:
    dirty: Dirty = set()
    tables = stored(folder, dirty)
    schedule = fill(tables["ageing"])
    commit(tables, folder, dirty)
    schedule.add(T0 + timedelta(days=1), 40)  # pending: not in the folder yet
    assert schedule.due(T0 + timedelta(days=6)) == [40, 3, 12, 5]
    commit(tables, folder, dirty)  # the due entries leave the folder with the next commit
    restarted = AgeingSchedule(stored(folder, set())["ageing"])
    assert not restarted.empty()
    assert restarted.due(T0 + timedelta(days=30)) == [7]


def test_a_bounded_due_takes_the_earliest_entries_and_leaves_the_rest_due(
    folder: Rdict,
) -> None:
    """Issue 23: a tick after a long replay takes a bounded share of the due entries; over
    successive calls the customers come in the same order as one unbounded call, once."""
    dirty: Dirty = set()
    tables = stored(folder, dirty)
    fill(tables["ageing"])
    commit(tables, folder, dirty)
    now = T0 + timedelta(days=30)
    plain = fill({})
    on_disk = AgeingSchedule(tables["ageing"])
    on_disk.add(T0 + timedelta(days=1), 40)  # pending, before every committed entry
    plain.add(T0 + timedelta(days=1), 40)
    for schedule in (plain, on_disk):
        taken = []
        while schedule.is_due(now):
            batch = schedule.due(now, limit=2)
            assert 1 <= len(batch) <= 2
            taken.extend(batch)
        assert taken == [40, 3, 12, 5, 7]
        assert schedule.due(now, limit=2) == []
        assert not schedule.is_due(now)
    assert not AgeingSchedule({}).is_due(now)
