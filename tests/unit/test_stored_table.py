"""``StoredTable``: a tracked mapping over a real RocksDB folder with a bounded cache.

Invariants: reads see pending changes first, then a commit under way, then the folder; the
folder is only written by the store (so it holds the committed state, never more); the
cache never holds more than ``cache_entries`` values; changes are tracked like
``TrackedTable``'s (an equal value is not a change).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from rocksdict import Rdict

from tables.state_codec import encode, entry_key
from tables.stored import StoredTable
from tables.tracked import Dirty
from tests.unit.state_folder import commit, state_folder


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Rdict]:
    with state_folder(tmp_path / "state") as db:
        yield db


def test_reads_pending_then_folder_and_writes_nothing_before_a_commit(folder: Rdict) -> None:
    dirty: Dirty = set()
    table: StoredTable[int, Decimal] = StoredTable("orders", dirty, cache_entries=2)
    table.bind(folder)
    table[1] = Decimal("1.50")
    table[2] = Decimal("2.00")
    assert table[1] == Decimal("1.50")
    assert 2 in table
    assert 3 not in table
    assert folder.get(entry_key("orders", 1)) is None  # uncommitted: not in the folder
    assert dirty == {("orders", 1), ("orders", 2)}

    commit({table.name: table}, folder, dirty)
    assert folder.get(entry_key("orders", 1)) == encode(Decimal("1.50"))
    table[1] = Decimal("1.50")  # equal: not a change
    assert dirty == set()

    fresh: StoredTable[int, Decimal] = StoredTable("orders", set(), cache_entries=2)
    fresh.bind(folder)  # a restarted worker reads the committed entries from the folder
    assert fresh.get(2) == Decimal("2.00")
    assert fresh.get(9, "none") == "none"
    assert sorted(fresh) == [1, 2]
    assert len(fresh) == 2


def test_a_delete_hides_the_folder_entry_until_committed_then_removes_it(folder: Rdict) -> None:
    dirty: Dirty = set()
    table: StoredTable[int, Decimal] = StoredTable("orders", dirty)
    table.bind(folder)
    table[1] = Decimal("1")
    table[2] = Decimal("2")
    commit({table.name: table}, folder, dirty)
    del table[1]
    assert 1 not in table
    assert sorted(table) == [2]
    assert folder.get(entry_key("orders", 1)) is not None
    with pytest.raises(KeyError):
        del table[1]
    commit({table.name: table}, folder, dirty)
    assert folder.get(entry_key("orders", 1)) is None
    assert sorted(table) == [2]


def test_a_commit_under_way_stays_readable_and_later_changes_are_not_lost(folder: Rdict) -> None:
    dirty: Dirty = set()
    table: StoredTable[int, Decimal] = StoredTable("orders", dirty)
    table.bind(folder)
    table[1] = Decimal("1")
    assert table.to_commit(1) == Decimal("1")  # taken by a commit that has not finished
    dirty.clear()
    assert table[1] == Decimal("1")
    table[1] = Decimal("5")  # changed again while the commit retries
    assert table[1] == Decimal("5")
    assert dirty == {("orders", 1)}
    assert table.to_commit(1) == Decimal("5")  # the next commit writes the newer value


def test_the_cache_is_bounded_and_misses_read_the_folder(folder: Rdict) -> None:
    dirty: Dirty = set()
    table: StoredTable[int, Decimal] = StoredTable("orders", dirty, cache_entries=3)
    table.bind(folder)
    for key in range(10):
        table[key] = Decimal(key)
    commit({table.name: table}, folder, dirty)
    assert len(table.cache) == 3  # the newest three stay
    reads = table.folder_reads
    assert [table[k] for k in range(10)] == [Decimal(k) for k in range(10)]
    assert table.folder_reads > reads
    assert len(table.cache) == 3


def test_tables_share_a_folder_without_seeing_each_other(folder: Rdict) -> None:
    dirty: Dirty = set()
    orders: StoredTable[int, Decimal] = StoredTable("orders", dirty)
    items: StoredTable[int, Decimal] = StoredTable("order_items", dirty)
    for table in (orders, items):
        table.bind(folder)
    orders[1] = Decimal("1")
    items[1] = Decimal("9")
    commit({"orders": orders, "order_items": items}, folder, dirty)
    assert list(orders) == [1]
    assert list(items) == [1]
    assert orders[1] == Decimal("1")
    assert items[1] == Decimal("9")
