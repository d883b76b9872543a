"""Tracked tables whose committed entries live in the local state folder, not in memory.

The analytics state grows with history: every order, its items, every customer's order ids
and features. Held in dicts, a worker's memory grows with the business (issue 23). A
``StoredTable`` holds in memory only:

- ``pending``: entries changed since the last flush (the next commit's changelog records;
  bounded by what one flush interval changes);
- ``committing``: the entries a commit in progress writes (read through while it retries);
- ``cache``: up to ``cache_entries`` committed values, the least recently used evicted
  (absent keys are cached too: a new order is looked up before it is stored);

and reads everything else from the folder (RocksDB), which holds exactly the *committed*
state: the store writes a commit's entries there after its Kafka transaction, never
before, so a crash leaves the folder at its checkpoint, never ahead of it. Keys and values
in the folder are the changelog's (``state_codec.entry_key``, ``state_codec.encode``), so a
restore copies changelog records into the folder without decoding them.

Pure: the folder is anything with ``get`` and ordered ``keys`` (a ``rocksdict.Rdict`` in
the worker); the changelog I/O lives in ``agents.analytics_state``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator, MutableMapping
from typing import Any, Protocol, TypeVar

from tables.state_codec import decode, entry_key, entry_prefix, parse_key
from tables.tracked import Dirty

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
GONE: Any = object()  # a deleted (or never stored) entry, as seen through the layers
_MISSING: Any = object()


class Folder(Protocol):
    """The committed entries: what a ``rocksdict.Rdict`` in raw mode offers (bytes keys and
    values, keys iterated in order; typed loosely, as rocksdict types them)."""

    def get(self, key: Any, default: Any = None) -> Any: ...

    def keys(self, backwards: bool = False, from_key: Any = None) -> Iterable[Any]: ...


def prefixed_keys(folder: Folder, prefix: bytes) -> Iterator[bytes]:
    """The folder's keys that start with ``prefix``, in order."""
    for key in folder.keys(from_key=prefix):
        if not key.startswith(prefix):
            return
        yield key


class StoredTable(MutableMapping[K, V]):
    """A mapping over the folder's entries of ``name``, changes tracked in ``dirty``."""

    #: Iteration reads a snapshot (RocksDB iterators are), so it may go on while the table
    #: changes (``CustomerFeatureState.recompute_all`` sweeps it across flushes).
    iterates_a_snapshot = True

    def __init__(self, name: str, dirty: Dirty, *, cache_entries: int = 20_000) -> None:
        self.name = name
        self.dirty = dirty
        self.cache_entries = max(cache_entries, 1)
        self.prefix = entry_prefix(name)
        self.folder: Folder | None = None
        self.pending: dict[K, Any] = {}
        self.committing: dict[K, Any] = {}
        self.cache: OrderedDict[K, Any] = OrderedDict()
        self.folder_reads = 0  # cache misses that read the folder

    def bind(self, folder: Folder | None) -> None:
        """Read committed entries from ``folder`` from now on (None: none are stored)."""
        self.folder = folder
        self.cache.clear()

    # -- reads --------------------------------------------------------------------------------
    def _lookup(self, key: K) -> Any:
        """The entry's value, or ``GONE``: pending, committing, cache, then the folder."""
        value = self.pending.get(key, _MISSING)
        if value is _MISSING:
            value = self.committing.get(key, _MISSING)
        if value is not _MISSING:
            return value
        cache = self.cache
        value = cache.get(key, _MISSING)
        if value is not _MISSING:
            cache.move_to_end(key)
            return value
        raw = None if self.folder is None else self.folder.get(entry_key(self.name, key))
        self.folder_reads += 1
        value = GONE if raw is None else decode(raw)
        self._remember(key, value)
        return value

    def _remember(self, key: K, value: Any) -> None:
        cache = self.cache
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.cache_entries:
            cache.popitem(last=False)

    def get(self, key: K, default: Any = None) -> Any:  # the hot path: no KeyError dance
        value = self._lookup(key)
        return default if value is GONE else value

    def __getitem__(self, key: K) -> V:
        value = self._lookup(key)
        if value is GONE:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return self._lookup(key) is not GONE  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[K]:
        """Every key: the uncommitted ones, then the folder's (a scan: for rare work only,
        such as a TRUNCATE or a category rename that touches every customer)."""
        overlay = {**self.committing, **self.pending}
        for key, value in overlay.items():
            if value is not GONE:
                yield key
        if self.folder is None:
            return
        for raw in prefixed_keys(self.folder, self.prefix):
            key = parse_key(raw)[1]
            if key not in overlay:
                yield key

    def keys_below(self, bound: str, limit: int | None = None) -> list[K]:
        """The (text) keys below ``bound``, in order (the first ``limit`` of them), read in
        order from the folder: what a time-keyed table such as the ageing schedule needs,
        without a scan of it all."""
        overlay: dict[Any, Any] = {**self.committing, **self.pending}
        keys: list[Any] = [k for k, v in overlay.items() if v is not GONE and k < bound]
        if self.folder is not None:
            limit_key = entry_key(self.name, bound)
            read = 0
            for raw in prefixed_keys(self.folder, self.prefix):
                if raw >= limit_key or (limit is not None and read >= limit):
                    break
                key = parse_key(raw)[1]
                if key not in overlay:
                    keys.append(key)
                    read += 1
        return sorted(keys)[:limit]

    def keys_with_prefix(self, prefix: str) -> list[K]:
        """The (text) keys that start with ``prefix``, read as one range of the folder."""
        overlay: dict[Any, Any] = {**self.committing, **self.pending}
        keys: list[Any] = [
            k for k, v in overlay.items() if v is not GONE and str(k).startswith(prefix)
        ]
        if self.folder is not None:
            start = entry_key(self.name, prefix)[:-2]  # without the closing '"]'
            for raw in prefixed_keys(self.folder, start):
                key = parse_key(raw)[1]
                if key not in overlay:
                    keys.append(key)
        return sorted(keys)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    # -- writes -------------------------------------------------------------------------------
    def __setitem__(self, key: K, value: V) -> None:
        if self._lookup(key) == value:  # an equal value is not a change
            return
        self.pending[key] = value
        self.dirty.add((self.name, key))

    def __delitem__(self, key: K) -> None:
        if self._lookup(key) is GONE:
            raise KeyError(key)
        self.pending[key] = GONE
        self.dirty.add((self.name, key))

    # -- the store's side ---------------------------------------------------------------------
    def to_commit(self, key: K) -> Any:
        """The value a commit writes for ``key`` (None: a delete); it stays readable while
        the commit is under way."""
        value = self.pending.pop(key, _MISSING)
        if value is _MISSING:
            value = self.committing.get(key, GONE)
        self.committing[key] = value
        return None if value is GONE else value

    def committed(self) -> None:
        """The commit reached the changelog and the folder: its entries become cache."""
        for key, value in self.committing.items():
            self._remember(key, value)
        self.committing.clear()

    def forget_cache(self) -> None:
        """Drop cached values (after the folder changed underneath, e.g. a restore)."""
        self.cache.clear()
