"""Stored state tables over a real RocksDB folder, and the commit the state store makes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rocksdict import Options, Rdict, WriteBatch

from tables.state_codec import encode, entry_key
from tables.stored import StoredTable
from tables.tracked import Dirty


@contextmanager
def state_folder(path: Path) -> Iterator[Rdict]:
    folder = Rdict(str(path), Options(raw_mode=True))
    try:
        yield folder
    finally:
        folder.close()


def stored_tables(
    folder: Rdict, dirty: Dirty, *names: str, cache_entries: int = 2
) -> dict[str, StoredTable[Any, Any]]:
    """Tables bound to ``folder`` (a tiny cache by default, so reads go to the folder)."""
    tables: dict[str, StoredTable[Any, Any]] = {}
    for name in names:
        tables[name] = StoredTable(name, dirty, cache_entries=cache_entries)
        tables[name].bind(folder)
    return tables


def commit(tables: dict[str, StoredTable[Any, Any]], folder: Rdict, dirty: Dirty) -> None:
    """What ``AnalyticsStateStore.commit`` does after its Kafka transaction: the changed
    entries into the folder, then the tables move them from pending to their cache."""
    batch = WriteBatch(raw_mode=True)
    for name, key in sorted(dirty, key=repr):
        value = tables[name].to_commit(key)
        if value is None:
            batch.delete(entry_key(name, key))
        else:
            batch.put(entry_key(name, key), encode(value))
    dirty.clear()
    folder.write(batch)
    for table in tables.values():
        table.committed()
