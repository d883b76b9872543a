"""Mappings that remember which keys changed, so a flush writes only those to the changelog.

``TrackedTable`` is a dict-backed ``MutableMapping`` for one named piece of the analytics
state; every set or delete that changes something adds ``(name, key)`` to the shared
``dirty`` set. Setting a key to an equal value is not a change (a recovery that re-stores
unchanged rows writes nothing). Pure: the changelog I/O lives in
``agents.analytics_state``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, MutableMapping
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
#: ``(table name, key)`` of every entry changed since the last flush.
Dirty = set[tuple[str, Any]]


class TrackedTable(MutableMapping[K, V]):
    """A dict that records changed keys in ``dirty`` under ``name``."""

    __slots__ = ("data", "dirty", "name")

    def __init__(self, name: str, dirty: Dirty) -> None:
        self.name = name
        self.dirty = dirty
        self.data: dict[K, V] = {}

    def __getitem__(self, key: K) -> V:
        return self.data[key]

    def get(self, key: K, default: Any = None) -> Any:  # the hot path: no KeyError dance
        return self.data.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __setitem__(self, key: K, value: V) -> None:
        data = self.data
        if key in data and data[key] == value:
            return
        data[key] = value
        self.dirty.add((self.name, key))

    def __delitem__(self, key: K) -> None:
        del self.data[key]
        self.dirty.add((self.name, key))

    def __iter__(self) -> Iterator[K]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def to_commit(self, key: K) -> V | None:
        """The value a commit writes for ``key`` (None: a delete)."""
        return self.data.get(key)

    def committed(self) -> None:
        """Nothing to do: the entries are in memory already (``StoredTable`` moves them)."""

    def load(self, key: K, value: V | None) -> None:
        """Restore one entry from the changelog (None: deleted); not a change."""
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value
