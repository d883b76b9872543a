"""Archival of detached bronze partitions from PostgreSQL into the Delta bronze tables.

``partitions apply`` detaches bronze children past retention into schema ``archive``
(``sinks/postgres/partitions.py``); this moves those whose range ended before a cutoff
into the lake and only then drops them.

Invariant: a PostgreSQL partition is dropped only after every one of its rows was found in
Delta exactly once with an equal checksum (``sinks/delta/bronze.row_checksum``), read back
from the log after the write. Rows the lake sink already wrote from Kafka are not written
twice: the partition's records missing in Delta are appended, those present are compared;
a present row that differs stops the archival of that partition (nothing dropped). The
drop and its ``ops.data_lineage`` row commit in one transaction, so a crash anywhere leaves
either the partition (and a rerun finishes the move, appending nothing twice) or both the
Delta rows and the lineage record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from config.errors import PermanentError
from serdes.plain_events import SCALEOUT_BRONZE_TABLES
from sinks.delta.bronze import KEY_COLUMNS, record_key, row_checksum, set_checksum
from sinks.delta.store import DeltaBronzeStore
from sinks.postgres.batch import BRONZE_COLUMNS
from sinks.postgres.partition_bounds import parse_partition_bound
from sinks.postgres.partitions import ARCHIVE_SCHEMA
from sinks.postgres.tables import TABLES

log = logging.getLogger("bitvelocity.lake.archive")
TRANSFORMATION = "ARCHIVE_TO_DELTA"
# The comment `partitions apply` leaves on every archived child.
_COMMENT = re.compile(
    r"^archived partition (?P<child>\S+) of bronze\.(?P<table>\w+) (?P<bound>.+)$"
)
_ARCHIVED = """
SELECT c.relname AS name, obj_description(c.oid, 'pg_class') AS comment
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind = 'r'
ORDER BY c.relname
"""


class ArchiveVerificationError(PermanentError):
    """Delta does not hold the partition's rows exactly: the partition was kept."""


@dataclass(frozen=True, slots=True)
class ArchivedPartition:
    """A detached bronze child in schema ``archive``, covering ``[lower, upper)``."""

    name: str
    table: str
    child: str
    lower: date
    upper: date

    @property
    def qualified(self) -> str:
        return f"{ARCHIVE_SCHEMA}.{self.name}"

    @property
    def days(self) -> list[date]:
        return [self.lower + timedelta(days=n) for n in range((self.upper - self.lower).days)]


@dataclass(frozen=True, slots=True)
class ArchiveOutcome:
    partition: ArchivedPartition
    rows: int
    appended: int
    already_in_delta: int
    checksum: str
    delta_version: int | None
    dropped: bool


#: Bronze tables whose detached partitions move to Delta: CDC ones and the event ones (0015).
_ARCHIVED_TABLES = frozenset((*TABLES, *SCALEOUT_BRONZE_TABLES))


async def archivable(
    connection: asyncpg.Connection, *, older_than: timedelta, now: datetime
) -> list[ArchivedPartition]:
    """Detached bronze children whose range ended at least ``older_than`` before ``now``."""
    cutoff = (now - older_than).date()
    found = []
    for row in await connection.fetch(_ARCHIVED, ARCHIVE_SCHEMA):
        match = _COMMENT.match(row["comment"] or "")
        if match is None or match["table"] not in _ARCHIVED_TABLES:
            continue
        bounds = parse_partition_bound(match["bound"])
        if bounds.lower is None or bounds.upper is None:
            continue
        if bounds.upper.date() <= cutoff:
            found.append(
                ArchivedPartition(
                    row["name"],
                    match["table"],
                    match["child"],
                    bounds.lower.date(),
                    bounds.upper.date(),
                )
            )
    return found


async def archive_older_than(
    connection: asyncpg.Connection,
    store: DeltaBronzeStore,
    *,
    older_than: timedelta,
    now: datetime,
    dry_run: bool = False,
) -> tuple[list[ArchiveOutcome], list[str]]:
    """Archive every archivable partition; a partition that fails verification stays (its
    message is returned) and the others go on."""
    done: list[ArchiveOutcome] = []
    failed: list[str] = []
    for partition in await archivable(connection, older_than=older_than, now=now):
        try:
            done.append(await archive_partition(connection, store, partition, dry_run=dry_run))
        except ArchiveVerificationError as exc:
            failed.append(str(exc))
    return done, failed


async def archive_partition(
    connection: asyncpg.Connection,
    store: DeltaBronzeStore,
    partition: ArchivedPartition,
    *,
    dry_run: bool = False,
) -> ArchiveOutcome:
    """Copy the partition's missing rows to Delta, verify all, then drop it (with lineage)."""
    statement = await connection.fetchval(
        "SELECT format('SELECT %s FROM %I.%I', $1::text, $2::text, $3::text)",
        ", ".join(BRONZE_COLUMNS),  # code constants, not user input
        ARCHIVE_SCHEMA,
        partition.name,
    )
    source = [dict(row) for row in await connection.fetch(statement)]
    expected = {record_key(row): row_checksum(row) for row in source}
    if len(expected) != len(source):
        raise ArchiveVerificationError(f"{partition.qualified} holds a record twice")
    present = await _delta_checksums(store, partition)
    _compare(partition, expected, present, require_all=False)
    missing = [row for row in source if record_key(row) not in present]
    version = None
    if dry_run:
        return ArchiveOutcome(
            partition,
            len(source),
            len(missing),
            len(source) - len(missing),
            set_checksum(expected.values()),
            None,
            False,
        )
    if missing:
        rows = [tuple(row[column] for column in BRONZE_COLUMNS) for row in missing]
        version = await asyncio.to_thread(
            store.append,
            partition.table,
            rows,
            {"bv.archive": partition.qualified, "bv.child": partition.child},
        )
    # Read back from the log (not from what was just written) before anything is dropped.
    _compare(partition, expected, await _delta_checksums(store, partition), require_all=True)
    checksum = set_checksum(expected.values())
    outcome = ArchiveOutcome(
        partition, len(source), len(missing), len(source) - len(missing), checksum, version, True
    )
    await _drop_with_lineage(connection, store, outcome)
    return outcome


async def _delta_checksums(
    store: DeltaBronzeStore, partition: ArchivedPartition
) -> dict[tuple[str, int, int], list[str]]:
    data = await asyncio.to_thread(store.read_days, partition.table, partition.days)
    found: dict[tuple[str, int, int], list[str]] = {}
    for row in data.to_pylist():
        found.setdefault(record_key(row), []).append(row_checksum(row))
    return found


def _compare(
    partition: ArchivedPartition,
    expected: dict[tuple[str, int, int], str],
    present: dict[tuple[str, int, int], list[str]],
    *,
    require_all: bool,
) -> None:
    problems = []
    for key, checksum in expected.items():
        copies = present.get(key)
        if copies is None:
            if require_all:
                problems.append(f"{key} missing")
        elif len(copies) != 1:
            problems.append(f"{key} {len(copies)} times")
        elif copies[0] != checksum:
            problems.append(f"{key} differs")
    if problems:
        shown = "; ".join(problems[:5])
        raise ArchiveVerificationError(
            f"{partition.qualified}: Delta bronze.{partition.table} does not match "
            f"({len(problems)} records: {shown}); the partition was kept"
        )


async def _drop_with_lineage(
    connection: asyncpg.Connection, store: DeltaBronzeStore, outcome: ArchiveOutcome
) -> None:
    partition = outcome.partition
    config = {
        "partition": partition.qualified,
        "child": partition.child,
        "from": partition.lower.isoformat(),
        "to": partition.upper.isoformat(),
        "rows": outcome.rows,
        "appended": outcome.appended,
        "already_in_delta": outcome.already_in_delta,
        "checksum_sha256": outcome.checksum,
        "delta_version": outcome.delta_version,
        "key": list(KEY_COLUMNS),
    }
    async with connection.transaction():
        await connection.execute(
            "INSERT INTO ops.data_lineage (source_dataset, target_dataset, transformation_type, "
            "transformation_config, dependency_level) VALUES ($1, $2, $3, $4::jsonb, 2) "
            "ON CONFLICT (source_dataset, target_dataset, transformation_type) "
            "DO UPDATE SET transformation_config = EXCLUDED.transformation_config, "
            "created_at = now()",
            f"postgres.{partition.qualified}",
            f"delta.{store.table_uri(partition.table)}",
            TRANSFORMATION,
            json.dumps(config),
        )
        statement = await connection.fetchval(
            "SELECT format('DROP TABLE %I.%I', $1::text, $2::text)", ARCHIVE_SCHEMA, partition.name
        )
        await connection.execute(statement)
    log.info("archived %s to Delta and dropped it", partition.qualified, extra=config)


def outcome_as_dict(outcome: ArchiveOutcome) -> dict[str, Any]:
    partition = outcome.partition
    return {
        "partition": partition.qualified,
        "table": partition.table,
        "from": partition.lower.isoformat(),
        "to": partition.upper.isoformat(),
        "rows": outcome.rows,
        "appended": outcome.appended,
        "already_in_delta": outcome.already_in_delta,
        "checksum_sha256": outcome.checksum,
        "delta_version": outcome.delta_version,
        "dropped": outcome.dropped,
    }
