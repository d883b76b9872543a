"""The analytics state in a compacted Kafka changelog, cached in a local RocksDB folder.

Every entry of ``AnalyticsState`` (contributions, windows, orders, ...), the consumed
position of every source partition and the per-partition watermark progress are records
of ONE compacted topic, keyed ``[table, key]`` (a delete is a tombstone). A flush writes
the entries that changed since the last one, positions included, in ONE Kafka
transaction: a restore never sees a state half-written, nor state without the positions it
came from. After the transaction commits, the same entries and the changelog's end offset
(the checkpoint) go to the local folder (rocksdict, one atomic write batch).

``open()`` restores: it first fences and aborts a previous instance's open transaction
(same ``transactional.id``), loads the local folder, then reads the changelog from the
checkpoint (or from the beginning when the folder is gone) to its end. Deleting the folder
costs only restore time. The runner then resumes every source partition at its restored
position; records consumed after the last flush are applied again, which the pure core
makes harmless (contributions replaced by order id, LSN-guarded; features recomputed).

Why not Faust tables: docs/decisions/0009-analytics-state-changelog.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic
from rocksdict import Options, Rdict, WriteBatch

from config.errors import PermanentError, TransientError
from config.settings import Settings
from tables.analytics import AnalyticsState
from tables.state_codec import decode, encode, entry_key, entry_prefix, parse_key
from tables.stored import StoredTable, prefixed_keys
from tables.tracked import Dirty, TrackedTable

log = logging.getLogger("bitvelocity.analytics.state")
TABLE_NAMES = tuple(f.name for f in fields(AnalyticsState))
#: The tables that grow with history (orders, customers): kept in the local folder with a
#: bounded cache, not in memory (issue 23). The others (windows within retention, products,
#: categories, truncations) stay small and live in memory.
STORED_TABLES = frozenset(
    {"contributions", "orders", "customer_orders", "items", "features", "ageing", "window_orders"}
)
#: Changelog records copied to the folder per write while restoring (bounds the memory of
#: a restore of any size).
RESTORE_CHUNK = 20_000
POSITION = "$position"  # "<topic>|<partition>" -> next offset to consume
PROGRESS = "$progress"  # orders partition -> {"newest": event time, "last": commit time}
CHECKPOINT = b"\x00checkpoint"  # local folder only: changelog offset it holds up to
Positions = dict[tuple[str, int], int]
Progress = dict[int, tuple[Any, Any]]


@dataclass
class RestoreStats:
    """What ``open()`` did: the figures the recovery test reports."""

    local_entries: int = 0
    changelog_records: int = 0
    changelog_bytes: int = 0
    state_entries: int = 0
    seconds: float = 0.0
    from_scratch: bool = True


class AnalyticsStateStore:
    """``open()`` (restore), then ``commit()`` per flush; blocking calls, run them in a thread."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str,
        folder: Path,
        transactional_id: str,
        timeout_s: float = 60.0,
        cache_entries: int = 20_000,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.folder = folder
        self.transactional_id = transactional_id
        self.timeout_s = timeout_s
        self.dirty: Dirty = set()
        self.tables: dict[str, TrackedTable[Any, Any] | StoredTable[Any, Any]] = {
            name: StoredTable(name, self.dirty, cache_entries=cache_entries)
            if name in STORED_TABLES
            else TrackedTable(name, self.dirty)
            for name in TABLE_NAMES
        }
        self.state = AnalyticsState(**self.tables)
        self.positions: Positions = {}
        self.progress: Progress = {}
        self.stats = RestoreStats()
        self.commits = 0
        self._producer: Producer | None = None
        self._db: Rdict | None = None
        self._stored_prefixes = tuple(entry_prefix(name) for name in sorted(STORED_TABLES))

    # -- restore --------------------------------------------------------------------------------
    def open(self) -> RestoreStats:
        """Fence a zombie writer, then restore: the local folder, then the changelog's tail."""
        started = time.monotonic()
        self._ensure_topic()
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "transactional.id": self.transactional_id,
                "linger.ms": 5,
                "queue.buffering.max.messages": 1_000_000,
            }
        )
        producer.init_transactions(self.timeout_s)  # fences a zombie, aborts its transaction
        self._producer = producer
        consumer = _restore_consumer(self.bootstrap_servers, self.transactional_id)
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self.topic, 0), timeout=self.timeout_s
            )
            checkpoint = self._open_local(low, high)
            end = self._read_changelog(consumer, checkpoint, high)
        finally:
            consumer.close()
        self.stats.state_entries = self._count_entries()
        self.stats.seconds = time.monotonic() - started
        log.info(
            "analytics state restored: %d entries (%d local, %d changelog records, %d bytes)"
            " in %.2f s; changelog end %d",
            self.stats.state_entries,
            self.stats.local_entries,
            self.stats.changelog_records,
            self.stats.changelog_bytes,
            self.stats.seconds,
            end,
        )
        return self.stats

    def _open_local(self, low: int, high: int) -> int | None:
        """Open the local folder and apply it; its changelog checkpoint, or None when the
        folder is new or was made for a changelog that no longer exists (then emptied)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        db = Rdict(str(self.folder), _folder_options())
        checkpoint_bytes = db.get(CHECKPOINT)
        checkpoint = None if checkpoint_bytes is None else int(checkpoint_bytes)
        if checkpoint is not None and not low <= checkpoint <= high:
            log.warning(
                "local analytics state is at changelog offset %d outside [%d, %d]:"
                " the changelog was replaced; restoring from scratch",
                checkpoint,
                low,
                high,
            )
            checkpoint = None
        if checkpoint is None and next(iter(db.keys()), None) is not None:
            # Entries without a checkpoint: a restore from scratch that did not finish (or a
            # replaced changelog). Start empty, so nothing the changelog no longer holds stays.
            db.close()
            shutil.rmtree(self.folder)
            self.folder.mkdir(parents=True)
            db = Rdict(str(self.folder), _folder_options())
        self._db = db
        for table in self._stored():
            table.bind(db)
        if checkpoint is not None:
            self.stats.from_scratch = False
            self.stats.local_entries = self._load_memory_tables(db)
        return checkpoint

    def _stored(self) -> list[StoredTable[Any, Any]]:
        return [t for t in self.tables.values() if isinstance(t, StoredTable)]

    def _load_memory_tables(self, db: Rdict) -> int:
        """Apply the folder's entries of the in-memory tables and positions; the stored
        tables are read from it when used. Returns how many entries the folder holds."""
        entries = 0
        for name in (*TABLE_NAMES, POSITION, PROGRESS):
            in_memory = name not in STORED_TABLES
            for key in prefixed_keys(db, entry_prefix(name)):
                entries += 1
                if in_memory:
                    self._apply(key, db[key])
        return entries

    def _count_entries(self) -> int:
        """State entries: the in-memory tables' plus the stored tables' keys in the folder."""
        count = sum(len(t) for t in self.tables.values() if not isinstance(t, StoredTable))
        if self._db is not None:
            for name in STORED_TABLES:
                count += sum(1 for _ in prefixed_keys(self._db, entry_prefix(name)))
        return count

    def _read_changelog(self, consumer: Consumer, checkpoint: int | None, high: int) -> int:
        """Copy the changelog from ``checkpoint`` to its end into the folder (in chunks, so a
        restore of any size fits in memory; decoding only the in-memory tables' entries)."""
        start = OFFSET_BEGINNING if checkpoint is None else checkpoint
        if checkpoint is not None and checkpoint >= high:
            return high
        db = self._db
        assert db is not None
        consumer.assign([TopicPartition(self.topic, 0, start)])
        deadline = time.monotonic() + self.timeout_s
        batch = WriteBatch(raw_mode=True)
        end = checkpoint or 0
        reached = False
        while not reached:
            if time.monotonic() > deadline:
                raise TransientError(f"changelog {self.topic} not read to offset {high} in time")
            for message in consumer.consume(num_messages=10_000, timeout=1.0):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        reached = reached or (message.offset() or 0) >= high
                        end = max(end, message.offset() or 0)
                        continue
                    raise TransientError(f"reading changelog {self.topic}: {error}")
                key, value = message.key(), message.value()
                if key is None:
                    continue
                self._restore_entry(key, value, batch)
                end = max(end, (message.offset() or 0) + 1)
            if len(batch) >= RESTORE_CHUNK:  # the checkpoint stays: a crash reads it again
                db.write(batch)
                batch = WriteBatch(raw_mode=True)
        batch.put(CHECKPOINT, str(end).encode())
        db.write(batch)
        return end

    def _restore_entry(self, key: bytes, value: bytes | None, batch: WriteBatch) -> None:
        if not key.startswith(self._stored_prefixes):
            self._apply(key, value)
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
        self.stats.changelog_records += 1
        self.stats.changelog_bytes += len(key) + len(value or b"")

    def _apply(self, key: bytes, value: bytes | None) -> None:
        table, item = parse_key(key)
        decoded = None if value is None else decode(value)
        if table == POSITION:
            topic, partition = str(item).rsplit("|", 1)
            if decoded is None:
                self.positions.pop((topic, int(partition)), None)
            else:
                self.positions[(topic, int(partition))] = int(decoded)
        elif table == PROGRESS:
            if decoded is None:
                self.progress.pop(int(item), None)
            else:
                self.progress[int(item)] = (decoded.get("newest"), decoded.get("last"))
        elif isinstance(stored := self.tables.get(table), TrackedTable):
            stored.load(item, decoded)
        else:
            raise PermanentError(f"unknown analytics state table {table!r} in {self.topic}")

    # -- flush ----------------------------------------------------------------------------------
    def changes(self, positions: Positions, progress: Progress) -> list[tuple[bytes, bytes | None]]:
        """The records a commit writes; takes (and clears) the dirty set. Call on the loop."""
        records: list[tuple[bytes, bytes | None]] = []
        taken = list(self.dirty)
        self.dirty.clear()
        for table, key in taken:
            value = self.tables[table].to_commit(key)
            records.append((entry_key(table, key), None if value is None else encode(value)))
        for (topic, partition), offset in positions.items():
            if self.positions.get((topic, partition)) != offset:
                self.positions[(topic, partition)] = offset
                records.append((entry_key(POSITION, f"{topic}|{partition}"), encode(offset)))
        for partition, (newest, last) in progress.items():
            if self.progress.get(partition) != (newest, last):
                self.progress[partition] = (newest, last)
                value = encode({"newest": newest, "last": last})
                records.append((entry_key(PROGRESS, partition), value))
        return records

    def commit(self, records: list[tuple[bytes, bytes | None]]) -> None:
        """Write ``records`` in one Kafka transaction, then to the local folder."""
        if not records:
            return
        producer, db = self._require()
        delivered: list[int] = []
        failures: list[KafkaError] = []

        def report(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                failures.append(error)
            else:
                delivered.append(message.offset() or 0)

        try:
            producer.begin_transaction()
            for key, value in records:
                self._produce(producer, key, value, report)
            producer.commit_transaction(self.timeout_s)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.fatal():  # e.g. fenced by a newer worker
                raise PermanentError(f"changelog {self.topic} producer is fenced: {exc}") from exc
            with contextlib.suppress(KafkaException):  # a new transaction on the retry
                producer.abort_transaction(self.timeout_s)
            raise TransientError(f"changelog transaction on {self.topic} failed: {exc}") from exc
        if failures:
            raise TransientError(f"changelog records not delivered: {failures[0]}")
        batch = WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(CHECKPOINT, str(max(delivered) + 1).encode())
        db.write(batch)
        for table in self.tables.values():
            table.committed()
        self.commits += 1

    def _produce(self, producer: Producer, key: bytes, value: bytes | None, report: Any) -> None:
        while True:
            try:
                producer.produce(self.topic, value=value, key=key, partition=0, on_delivery=report)
                return
            except BufferError:  # local queue full: let deliveries drain it
                producer.poll(0.1)

    def _require(self) -> tuple[Producer, Rdict]:
        if self._producer is None or self._db is None:
            raise PermanentError("AnalyticsStateStore used before open(); call open()")
        return self._producer, self._db

    def _ensure_topic(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        topic = NewTopic(self.topic, 1, 1, config={"cleanup.policy": "compact"})
        for future in admin.create_topics([topic], operation_timeout=10).values():
            try:
                future.result(timeout=self.timeout_s)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise TransientError(f"creating changelog {self.topic}: {exc}") from exc

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.timeout_s)
            self._producer = None
        if self._db is not None:
            for table in self._stored():
                table.bind(None)
            self._db.close()
            self._db = None


class ForeignStateError(PermanentError):
    """The changelog holds another pipeline's state (positions of none of our topics)."""


def check_own_state(changelog: str, positions: Positions, topics: Iterable[str]) -> None:
    """Refuse state restored from a changelog another pipeline writes.

    Every flush stores the state with the positions it came from, so a changelog that
    holds positions, none of them on ``topics``, was written by a pipeline reading other
    topics: its entries (order, item and product ids of another database) would mix with
    ours. Found by the chaos soak (issue 11): its workers on the stack's default changelog
    restored earlier runs' order items into preferred_category.
    """
    ours = set(topics)
    theirs = sorted({topic for topic, _ in positions})
    if theirs and not ours.intersection(theirs):
        shown = ", ".join(theirs[:3]) + (", ..." if len(theirs) > 3 else "")
        raise ForeignStateError(
            f"analytics changelog {changelog} holds the state of a pipeline reading {shown},"
            " none of this pipeline's topics: give each pipeline its own changelog"
            " (BV_TOPICS__ANALYTICS_STATE)"
        )


def state_store(settings: Settings, group_id: str) -> AnalyticsStateStore:
    """The store of the analytics consumer group ``group_id`` under ``settings``."""
    root = settings.features.state_dir or settings.stack.state_dir / "analytics-state"
    return AnalyticsStateStore(
        settings.kafka.bootstrap_servers,
        topic=settings.topics.analytics_state,
        folder=root / group_id,
        transactional_id=f"{group_id}-state",
        cache_entries=settings.features.state_cache_entries,
    )


def _folder_options() -> Options:
    """RocksDB options of the state folder: raw bytes (the changelog's), and memtables of
    16 MB (the default 64 MB ones count in the worker's RSS, issue 23). The tables' index
    blocks stay outside the block cache (RocksDB's default): in a 32 MB cache the large
    index block of the bottom level was evicted by data blocks and read again on every
    get, and the features' sweep after a replay ran five times slower."""
    options = Options(raw_mode=True)
    options.set_write_buffer_size(16 << 20)
    options.set_max_write_buffer_number(2)
    return options


def _restore_consumer(bootstrap_servers: str, transactional_id: str) -> Consumer:
    """Reads the changelog by assignment (never joins a group), committed records only."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"{transactional_id}-restore",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )


async def commit_retrying(
    store: AnalyticsStateStore,
    records: list[tuple[bytes, bytes | None]],
    in_thread: Callable[..., Awaitable[None]],
    *,
    initial_s: float,
    max_s: float,
) -> None:
    """Commit changed state and positions in one changelog transaction (in the consumer's
    thread), retrying a transient failure with backoff until it gets through."""
    started = time.monotonic()
    backoff = initial_s
    while True:
        try:
            await in_thread(store.commit, records)
            log.debug(
                "analytics state: %d changelog records in %.3f s",
                len(records),
                time.monotonic() - started,
            )
            return
        except TransientError as exc:
            log.warning("analytics state commit failed, retrying in %.1f s: %s", backoff, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_s)
