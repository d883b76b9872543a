"""Partition lifecycle of every pg_partman-managed table (DESIGN.md section 6).

``partition_report`` lists each parent of ``partman.part_config`` with its children, their
ranges, rows and sizes. ``apply_retention`` premakes the future children a parent should have
and retires (detaches into schema ``archive``, or drops) the children past their retention.

Invariants: the default partition is never detached or dropped (rows in it are reported: they
mean a child was missing when they arrived); identifiers come only from the catalog and reach
SQL through ``format('%I')``; applying twice changes nothing the second time; concurrent
``apply`` runs are refused by an advisory lock rather than interleaved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import asyncpg

from config.errors import ConfigurationError, PermanentError, TransientError
from config.settings import PartitionSettings
from sinks.postgres.partition_bounds import PartitionBounds, parse_partition_bound
from sinks.postgres.retention import (
    archive_index_name,
    archive_table_name,
    is_ahead,
    is_past_retention,
    setting_for,
    unknown_keys,
)

log = logging.getLogger("bitvelocity.partitions")

ARCHIVE_SCHEMA = "archive"
_APPLY_LOCK_KEY = 0x42_56_50_41  # "BVPA": one `partitions apply` per database at a time

_CATALOG = """
SELECT p.parent_table, p.control, p.partition_interval, p.premake,
       pn.nspname AS parent_schema, pc.relname AS parent_name, pc.oid AS parent_oid,
       t.typcategory::text AS control_category,
       cn.nspname AS child_schema, c.relname AS child_name, c.oid AS child_oid,
       pg_get_expr(c.relpartbound, c.oid) AS bound,
       c.reltuples::bigint AS estimate,
       pg_total_relation_size(c.oid) AS size_bytes
FROM partman.part_config AS p
JOIN pg_namespace AS pn ON pn.nspname = split_part(p.parent_table, '.', 1)
JOIN pg_class AS pc ON pc.relnamespace = pn.oid AND pc.relname = split_part(p.parent_table, '.', 2)
LEFT JOIN pg_attribute AS a ON a.attrelid = pc.oid AND a.attname = p.control
LEFT JOIN pg_type AS t ON t.oid = a.atttypid
LEFT JOIN pg_inherits AS i ON i.inhparent = pc.oid
LEFT JOIN pg_class AS c ON c.oid = i.inhrelid
LEFT JOIN pg_namespace AS cn ON cn.oid = c.relnamespace
ORDER BY p.parent_table, c.relname
"""

# The start of every child that should exist from the one holding `now` to `premake` ahead,
# aligned by pg_partman itself (it steps from the existing children by the parent's interval).
_WANTED_STARTS = """
SELECT DISTINCT s.suffix_timestamp AS start, s.table_exists
FROM partman.part_config AS p,
     generate_series(0, $2::int) AS k,
     LATERAL partman.show_partition_name(
         p.parent_table, ($3::timestamptz + k * p.partition_interval::interval)::text) AS s
WHERE p.parent_table = $1
ORDER BY 1
"""


class PartitionMaintenanceError(PermanentError):
    """PostgreSQL refused a partition change (a foreign key, a conflict, a missing extension)."""


class UnknownPartitionedTableError(ConfigurationError):
    """A BV_PARTITIONS__* setting names a table pg_partman does not manage."""


class PartitionLockTimeoutError(TransientError):
    """A parent table stayed locked (by writers) longer than the lock timeout: retry later."""


class PartitionApplyBusyError(TransientError):
    """Another ``partitions apply`` holds the lock on this database."""


@dataclass(frozen=True, slots=True)
class ChildPartition:
    """One child of a parent: its range, rows (estimated unless ``rows_exact``) and size."""

    schema: str
    name: str
    oid: int
    bounds: PartitionBounds
    rows: int | None
    rows_exact: bool
    size_bytes: int

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def is_default(self) -> bool:
        return self.bounds.is_default


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """One pg_partman-managed parent and its children, ordered by range (default last)."""

    parent: str
    schema: str
    table: str
    oid: int
    control: str
    interval: str
    time_based: bool
    premake: int
    children: tuple[ChildPartition, ...]
    premade_ahead: int

    @property
    def default(self) -> ChildPartition | None:
        return next((child for child in self.children if child.is_default), None)

    @property
    def default_rows(self) -> int:
        default = self.default
        return (default.rows or 0) if default is not None else 0


@dataclass(frozen=True, slots=True)
class PremakeStep:
    """Children to create for ``parent``, by range start (UTC)."""

    parent: str
    starts: tuple[datetime, ...]


@dataclass(frozen=True, slots=True)
class RetireStep:
    """A child past retention and what happens to it."""

    parent: str
    parent_oid: int
    child: ChildPartition
    action: Literal["detach", "drop"]
    archive_table: str | None  # schema-qualified target of a detach


@dataclass(frozen=True, slots=True)
class RetentionOutcome:
    """What ``apply_retention`` decided and, unless ``dry_run``, did."""

    now: datetime
    dry_run: bool
    premade: tuple[PremakeStep, ...]
    retired: tuple[RetireStep, ...]
    warnings: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.premade or self.retired)


async def partition_report(
    connection: asyncpg.Connection, *, exact_counts: bool = False, now: datetime | None = None
) -> list[PartitionInfo]:
    """Every pg_partman parent with its children; default partitions are always counted
    exactly (rows there are a warning), others only when ``exact_counts``."""
    moment = now or datetime.now(UTC)
    async with connection.transaction():
        await _utc_session(connection)
        try:
            rows = await connection.fetch(_CATALOG)
        except asyncpg.UndefinedTableError as exc:
            raise ConfigurationError(
                "pg_partman is not set up in this database (no partman.part_config); "
                "run `bitvelocity migrate`"
            ) from exc
        by_parent: dict[str, list[asyncpg.Record]] = {}
        for row in rows:
            by_parent.setdefault(row["parent_table"], []).append(row)
        report = []
        for parent, members in by_parent.items():
            children = [
                await _child(connection, row, exact_counts)
                for row in members
                if row["child_oid"] is not None
            ]
            children.sort(key=_range_order)
            first = members[0]
            report.append(
                PartitionInfo(
                    parent=parent,
                    schema=first["parent_schema"],
                    table=first["parent_name"],
                    oid=first["parent_oid"],
                    control=first["control"],
                    interval=first["partition_interval"],
                    time_based=first["control_category"] == "D",
                    premake=first["premake"],
                    children=tuple(children),
                    premade_ahead=sum(is_ahead(child.bounds, moment) for child in children),
                )
            )
    return report


async def apply_retention(
    connection: asyncpg.Connection,
    settings: PartitionSettings,
    *,
    now: datetime,
    dry_run: bool,
) -> RetentionOutcome:
    """Premake future children and retire those past retention, per ``settings``.

    With ``dry_run`` nothing changes: the outcome lists what would be done.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    locked = False
    if not dry_run:
        locked = await connection.fetchval("SELECT pg_try_advisory_lock($1)", _APPLY_LOCK_KEY)
        if not locked:
            raise PartitionApplyBusyError(
                "another `bitvelocity partitions apply` is running on this database; "
                "retry when it has finished"
            )
    try:
        report = await partition_report(connection, now=now)
        _check_settings(settings, [info.parent for info in report])
        premade: list[PremakeStep] = []
        for info in report:
            step = await _premake_step(connection, info, settings, now)
            if step is not None:
                premade.append(step)
        retired = tuple(step for info in report for step in _retire_steps(info, settings, now))
        warnings = tuple(_default_warning(info) for info in report if info.default_rows)
        for warning in warnings:
            log.warning(warning)
        if not dry_run:
            for premake in premade:
                await _premake(connection, premake, settings)
            for retire in retired:
                await _retire(connection, retire, settings)
        return RetentionOutcome(now, dry_run, tuple(premade), retired, warnings)
    finally:
        if locked:
            await connection.execute("SELECT pg_advisory_unlock($1)", _APPLY_LOCK_KEY)


def _check_settings(settings: PartitionSettings, parents: list[str]) -> None:
    explicit = settings.model_fields_set
    for name, values in (("RETENTION", settings.retention), ("PREMAKE", settings.premake)):
        # A default wildcard (bronze.*) may match nothing, e.g. in an OLTP-only database;
        # one the user wrote must match something, or it is a typo.
        unknown = unknown_keys(values, parents, wildcards=name.lower() in explicit)
        if unknown:
            raise UnknownPartitionedTableError(
                f"BV_PARTITIONS__{name} names {', '.join(unknown)}, not a pg_partman-managed "
                f"table here; managed tables: {', '.join(sorted(parents)) or 'none'}"
            )


async def _premake_step(
    connection: asyncpg.Connection, info: PartitionInfo, settings: PartitionSettings, now: datetime
) -> PremakeStep | None:
    if not info.time_based:
        return None  # id-ranged parents grow with their data: pg_partman's own maintenance
    found, premake = setting_for(info.parent, settings.premake)
    ahead = premake if found and premake is not None else info.premake
    existing = {child.bounds.lower for child in info.children if child.bounds.lower is not None}
    async with connection.transaction():
        await _utc_session(connection)
        try:
            rows = await connection.fetch(_WANTED_STARTS, info.parent, ahead, now)
        except asyncpg.PostgresError as exc:
            raise PartitionMaintenanceError(
                f"pg_partman could not name the future children of {info.parent}: {exc}"
            ) from exc
    starts = tuple(
        row["start"] for row in rows if not row["table_exists"] and row["start"] not in existing
    )
    return PremakeStep(info.parent, starts) if starts else None


def _retire_steps(
    info: PartitionInfo, settings: PartitionSettings, now: datetime
) -> list[RetireStep]:
    _, retention = setting_for(info.parent, settings.retention)
    if retention is None:
        return []
    if not info.time_based:
        raise UnknownPartitionedTableError(
            f"BV_PARTITIONS__RETENTION sets a retention for {info.parent}, whose partition key "
            f"{info.control} is not a date or time; remove it from the setting"
        )
    steps = []
    for child in info.children:
        if not is_past_retention(child.bounds, now, retention):
            continue
        archive = None
        if settings.archive_mode == "detach":
            name = archive_table_name(info.schema, info.table, child.bounds)
            archive = f"{ARCHIVE_SCHEMA}.{name}"
        steps.append(RetireStep(info.parent, info.oid, child, settings.archive_mode, archive))
    return steps


async def _premake(
    connection: asyncpg.Connection, step: PremakeStep, settings: PartitionSettings
) -> None:
    async with connection.transaction():
        await _utc_session(connection)
        await _lock_timeout(connection, settings)
        try:
            await connection.execute(
                "SELECT partman.create_partition_time($1, $2::timestamptz[], false)",
                step.parent,
                list(step.starts),
            )
        except asyncpg.LockNotAvailableError as exc:
            raise _lock_error(step.parent, settings) from exc
        except asyncpg.PostgresError as exc:
            raise PartitionMaintenanceError(
                f"could not create the children of {step.parent} starting "
                f"{', '.join(f'{s:%Y-%m-%d %H:%M}' for s in step.starts)}: {exc} (rows for that "
                "range already in the default partition must be moved first: "
                "partman.partition_data_time)"
            ) from exc
    log.info(
        "partitions premade",
        extra={"parent": step.parent, "starts": [s.isoformat() for s in step.starts]},
    )


async def _retire(
    connection: asyncpg.Connection, step: RetireStep, settings: PartitionSettings
) -> None:
    child = step.child
    async with connection.transaction():
        await _lock_timeout(connection, settings)
        still_attached = await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = $1 AND inhparent = $2)",
            child.oid,
            step.parent_oid,
        )
        if not still_attached:
            return  # retired meanwhile by someone else: nothing left to do
        try:
            if step.action == "drop":
                await _run(connection, "DROP TABLE %I.%I", child.schema, child.name)
            else:
                await _detach_to_archive(connection, step)
        except asyncpg.LockNotAvailableError as exc:
            raise _lock_error(step.parent, settings) from exc
        except asyncpg.PostgresError as exc:
            raise PartitionMaintenanceError(
                f"could not {step.action} {child.qualified} of {step.parent}: {exc}"
            ) from exc
    log.info(
        "partition %s",
        "dropped" if step.action == "drop" else "detached",
        extra={
            "parent": step.parent,
            "child": child.qualified,
            "bounds": child.bounds.expression,
            "archive_table": step.archive_table,
            "rows_estimate": child.rows,
        },
    )


async def _detach_to_archive(connection: asyncpg.Connection, step: RetireStep) -> None:
    child = step.child
    archive_name = (step.archive_table or "").partition(".")[2]
    parent_schema, parent_table = step.parent.split(".", 1)
    taken = await connection.fetchval(
        "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
        ARCHIVE_SCHEMA,
        archive_name,
    )
    if taken:
        raise PartitionMaintenanceError(
            f"cannot archive {child.qualified} of {step.parent}: {step.archive_table} already "
            "exists; drop or rename it, then run `bitvelocity partitions apply` again"
        )
    await _run(
        connection,
        "ALTER TABLE %I.%I DETACH PARTITION %I.%I",
        parent_schema,
        parent_table,
        child.schema,
        child.name,
    )
    await _run(connection, "CREATE SCHEMA IF NOT EXISTS %I", ARCHIVE_SCHEMA)
    indexes = await connection.fetch(
        "SELECT c.relname FROM pg_index AS x JOIN pg_class AS c ON c.oid = x.indexrelid "
        "WHERE x.indrelid = $1 ORDER BY c.relname",
        child.oid,
    )
    for index in indexes:
        # Indexes move with their table: keep children of different parents from colliding.
        new_name = archive_index_name(child.name, archive_name, index["relname"])
        await _run(
            connection, "ALTER INDEX %I.%I RENAME TO %I", child.schema, index["relname"], new_name
        )
    await _run(connection, "ALTER TABLE %I.%I RENAME TO %I", child.schema, child.name, archive_name)
    await _run(
        connection, "ALTER TABLE %I.%I SET SCHEMA %I", child.schema, archive_name, ARCHIVE_SCHEMA
    )
    await _run(
        connection,
        "COMMENT ON TABLE %I.%I IS %L",
        ARCHIVE_SCHEMA,
        archive_name,
        f"archived partition {child.qualified} of {step.parent} {child.bounds.expression}",
    )


async def _run(connection: asyncpg.Connection, template: str, *values: str) -> None:
    """Execute ``template`` with identifiers (``%I``) and literals (``%L``) filled in by
    PostgreSQL's own ``format``, so no name is ever spliced into SQL by Python."""
    statement = await connection.fetchval(
        "SELECT format($1, VARIADIC $2::text[])", template, values
    )
    await connection.execute(statement)


async def _child(
    connection: asyncpg.Connection, row: asyncpg.Record, exact_counts: bool
) -> ChildPartition:
    bounds = parse_partition_bound(row["bound"] or "")
    exact = exact_counts or bounds.is_default
    if exact:
        statement = await connection.fetchval(
            "SELECT format('SELECT count(*) FROM ONLY %I.%I', $1::text, $2::text)",
            row["child_schema"],
            row["child_name"],
        )
        rows: int | None = await connection.fetchval(statement)
    else:
        # reltuples is -1 until the child is first vacuumed or analyzed: unknown, not empty.
        rows = row["estimate"] if row["estimate"] >= 0 else None
    return ChildPartition(
        schema=row["child_schema"],
        name=row["child_name"],
        oid=row["child_oid"],
        bounds=bounds,
        rows=rows,
        rows_exact=exact,
        size_bytes=row["size_bytes"],
    )


def _range_order(child: ChildPartition) -> tuple[bool, datetime, str]:
    start = child.bounds.lower or datetime.min.replace(tzinfo=UTC)
    return child.is_default, start, child.name


def _default_warning(info: PartitionInfo) -> str:
    default = info.default
    name = default.qualified if default is not None else f"{info.parent} default"
    rows = info.default_rows
    return (
        f"{name} holds {rows} row{'' if rows == 1 else 's'}: no child covered their "
        f"{info.control} when they arrived; create that child (pg_partman's "
        "partition_data_time moves them there); the default partition is never archived"
    )


async def _utc_session(connection: asyncpg.Connection) -> None:
    # Bound literals, pg_partman's suffixes and our times must all be read in UTC and ISO.
    await connection.execute(
        "SELECT set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, YMD', true)"
    )


async def _lock_timeout(connection: asyncpg.Connection, settings: PartitionSettings) -> None:
    milliseconds = int(settings.lock_timeout.total_seconds() * 1000)
    await connection.execute("SELECT set_config('lock_timeout', $1, true)", f"{milliseconds}ms")


def _lock_error(parent: str, settings: PartitionSettings) -> PartitionLockTimeoutError:
    return PartitionLockTimeoutError(
        f"{parent} stayed locked longer than {settings.lock_timeout.total_seconds():g} s "
        "(writers are busy); run `bitvelocity partitions apply` again later"
    )


__all__ = [
    "ARCHIVE_SCHEMA",
    "ChildPartition",
    "PartitionInfo",
    "PremakeStep",
    "RetentionOutcome",
    "RetireStep",
    "apply_retention",
    "partition_report",
]
