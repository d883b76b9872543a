"""The ageing schedule: customers come due strictly before ``now``, in time order, once.

Invariant: the same answers over a plain dict (heap) and over a ``StoredTable`` whose
committed entries are in a real RocksDB folder (read in key order, which is time order),
including entries still pending a commit.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rocksdict import Options, Rdict, WriteBatch

from tables.ageing import AgeingSchedule, instant_key
from tables.state_codec import encode, entry_key
from tables.stored import StoredTable
from tables.tracked import Dirty

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Rdict]:
    db = Rdict(str(tmp_path / "state"), Options(raw_mode=True))
    yield db
    db.close()


def stored(folder: Rdict, dirty: Dirty) -> StoredTable[str, int]:
    table: StoredTable[str, int] = StoredTable("ageing", dirty, cache_entries=2)
    table.bind(folder)
    return table


def commit(table: StoredTable[str, int], folder: Rdict, dirty: Dirty) -> None:
    batch = WriteBatch(raw_mode=True)
    for name, key in dirty:
        value = table.to_commit(key)
        if value is None:
            batch.delete(entry_key(name, key))
        else:
            batch.put(entry_key(name, key), encode(value))
    dirty.clear()
    folder.write(batch)
    table.committed()


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
    table = stored(folder, dirty)
    schedule = fill(table)
    commit(table, folder, dirty)
    schedule.add(T0 + timedelta(days=1), 40)  # pending: not in the folder yet
    assert schedule.due(T0 + timedelta(days=6)) == [40, 3, 12, 5]
    commit(table, folder, dirty)  # the due entries leave the folder with the next commit
    restarted = AgeingSchedule(stored(folder, set()))
    assert not restarted.empty()
    assert restarted.due(T0 + timedelta(days=30)) == [7]
