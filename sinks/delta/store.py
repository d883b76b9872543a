"""The Delta bronze tables: write data files, commit them with the consumer's offsets.

A write has two steps, so a crash can fall between them (and the fault tests put it
there): Parquet files are written into the table's folder, then ONE Delta commit adds
them together with an application transaction per Kafka partition (``txn`` actions:
app id = group + topic + partition, version = the next offset to read). Files without a
commit are invisible to every reader and removed by ``vacuum``; a commit is atomic.

Invariant: a partition's ``txn`` version moves only from the value the writer read
(compare-and-set): before committing, the writer re-reads the log and refuses when
another writer moved it; and delta-rs's conflict checker fails a commit whose app id was
committed by someone else after the writer's snapshot (``CommitFailedError``,
"Concurrent transaction failed", verified against deltalake 1.6.6).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import TableNotFoundError
from deltalake.fs import DeltaStorageHandler
from deltalake.transaction import AddAction

from config.settings import LakeSettings
from sinks.delta.bronze import BRONZE_SCHEMA, PARTITION_COLUMN, bronze_tables_by_day, file_stats

log = logging.getLogger("bitvelocity.lake")


@dataclass(frozen=True, slots=True)
class StagedFile:
    """A data file written into the table's folder, not yet committed."""

    add: AddAction
    rows: int


@dataclass(frozen=True, slots=True)
class MaintenanceResult:
    table: str
    detail: dict[str, Any]


class DeltaBronzeStore:
    """The lake's bronze tables under one root URI; one cached ``DeltaTable`` per table."""

    def __init__(self, settings: LakeSettings, root: str) -> None:
        self.settings = settings
        self.root = root.rstrip("/")
        self._options = settings.plain_storage_options()
        self._tables: dict[str, DeltaTable] = {}
        self._filesystems: dict[str, pafs.FileSystem] = {}

    def table_uri(self, table: str) -> str:
        return f"{self.root}/bronze/{table}"

    # -- reading the log ----------------------------------------------------------------------
    def table(self, table: str, *, create: bool = True, refresh: bool = True) -> DeltaTable | None:
        """The table (created empty on first use when ``create``), at its latest version
        unless ``refresh`` is False (then at the version this store last read)."""
        cached = self._tables.get(table)
        if cached is not None:
            if refresh:
                cached.update_incremental()
            return cached
        uri = self.table_uri(table)
        try:
            opened = DeltaTable(uri, storage_options=self._options or None)
        except TableNotFoundError:
            if not create:
                return None
            # "ignore": two workers creating the same table at once both end with it.
            opened = DeltaTable.create(
                uri,
                BRONZE_SCHEMA,
                mode="ignore",
                partition_by=[PARTITION_COLUMN],
                name=f"bronze_{table}",
                description=f"bronze.{table}: one row per CDC record (BitVelocity Streams)",
                storage_options=self._options or None,
            )
        self._tables[table] = opened
        return opened

    def positions(self, table: str, app_ids: Sequence[str]) -> dict[str, int | None]:
        """The committed next offset of each app id (None: never committed)."""
        delta = self._require(table)
        return {app: delta.transaction_version(app) for app in app_ids}

    # -- writing --------------------------------------------------------------------------------
    def stage(self, table: str, rows: Sequence[tuple[Any, ...]]) -> list[StagedFile]:
        """Write ``rows`` (bronze tuples) as one Parquet file per ingestion date."""
        self._require(table, refresh=False)  # the folder must exist before the filesystem opens
        staged = []
        filesystem = self._filesystem(table)
        for day, data in sorted(bronze_tables_by_day(rows).items()):
            staged.append(self._write_file(filesystem, day, data))
        return staged

    def commit(
        self,
        table: str,
        files: Sequence[StagedFile],
        transactions: Mapping[str, int],
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Add ``files`` and set each app id's version, in one Delta commit.

        Against the snapshot of the last ``positions`` read (no second log read): a commit
        of the same app id by another writer since then fails delta-rs's conflict check.
        """
        delta = self._require(table, refresh=False)
        delta.create_write_transaction(
            [staged.add for staged in files],
            "append",
            BRONZE_SCHEMA,
            partition_by=[PARTITION_COLUMN],
            commit_properties=CommitProperties(
                custom_metadata=dict(metadata or {}) or None,
                app_transactions=[
                    Transaction(app, version) for app, version in transactions.items()
                ],
            ),
        )

    def append(
        self, table: str, rows: Sequence[tuple[Any, ...]], metadata: Mapping[str, Any]
    ) -> int:
        """Stage and commit ``rows`` without offsets (the archival of PostgreSQL partitions);
        returns the table's version after the commit."""
        self.commit(table, self.stage(table, rows), {}, metadata=metadata)
        return self._require(table).version()

    def read_days(self, table: str, days: Sequence[date]) -> pa.Table:
        """Every row of the given ingestion dates (an empty table when there is none)."""
        delta = self.table(table, create=False)
        if delta is None or not days:
            return BRONZE_SCHEMA.empty_table()
        return delta.to_pyarrow_table(filters=[(PARTITION_COLUMN, "in", list(days))])

    # -- maintenance -----------------------------------------------------------------------------
    def existing_tables(self, names: Sequence[str]) -> list[str]:
        return [name for name in names if self.table(name, create=False) is not None]

    def compact(self, table: str) -> MaintenanceResult:
        """Rewrite small files into ~``target_file_size_mb`` files (data unchanged)."""
        delta = self._require(table, create=False)
        metrics = delta.optimize.compact(
            target_size=self.settings.target_file_size_mb * 1024 * 1024,
            writer_properties=None,
        )
        return MaintenanceResult(table, dict(metrics))

    def vacuum(
        self, table: str, retention: timedelta, *, dry_run: bool, force: bool
    ) -> MaintenanceResult:
        """Delete files no version younger than ``retention`` references (and leftovers of
        crashed writes); ``force`` allows a retention below the table's minimum (7 days)."""
        delta = self._require(table, create=False)
        removed = delta.vacuum(
            retention_hours=int(retention.total_seconds() // 3600),
            dry_run=dry_run,
            enforce_retention_duration=not force,
            # Without "full", delta-rs skips files the log never mentioned: exactly what a
            # write that crashed between its Parquet files and its commit leaves behind.
            full=True,
        )
        return MaintenanceResult(table, {"files": len(removed), "dry_run": dry_run})

    def _require(self, table: str, *, create: bool = True, refresh: bool = True) -> DeltaTable:
        delta = self.table(table, create=create, refresh=refresh)
        if delta is None:
            raise TableNotFoundError(f"no Delta table at {self.table_uri(table)}")
        return delta

    # -- files -----------------------------------------------------------------------------------
    def _filesystem(self, table: str) -> pafs.FileSystem:
        """A pyarrow filesystem rooted at the table, on delta-rs's own object store: local
        folders and S3-compatible stores take the same ``storage_options``."""
        filesystem = self._filesystems.get(table)
        if filesystem is None:
            handler = DeltaStorageHandler(self.table_uri(table), self._options or None)
            filesystem = pafs.PyFileSystem(handler)
            self._filesystems[table] = filesystem
        return filesystem

    def _write_file(self, filesystem: pafs.FileSystem, day: date, data: pa.Table) -> StagedFile:
        codec = self.settings.compression
        folder = f"{PARTITION_COLUMN}={day.isoformat()}"
        path = f"{folder}/part-{uuid.uuid4()}.{codec}.parquet"
        filesystem.create_dir(folder, recursive=True)
        with filesystem.open_output_stream(path) as stream:
            pq.write_table(
                data,
                stream,
                compression=codec,
                compression_level=(
                    self.settings.compression_level if codec in ("zstd", "gzip") else None
                ),
            )
        size = filesystem.get_file_info(path).size or 0
        add = AddAction(
            path,
            size,
            {PARTITION_COLUMN: day.isoformat()},
            int(time.time() * 1000),
            True,
            file_stats(data),
        )
        return StagedFile(add, data.num_rows)
