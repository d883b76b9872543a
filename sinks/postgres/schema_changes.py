"""The schema guard: checks each new writer schema of a CDC table before its rows are written.

For every (table, schema id) first seen, it compares the writer schema with the silver
table (``schema_drift``, pure), records each difference with its decision in
``ops.schema_changes`` (a metric and a log line too), and then either lets the batch
through (silver evolved by the admin-owned ``ops.evolve_silver_column``, or nothing to do)
or pauses the table: the batch is cut before the first record of the change, so nothing
from it on is written, and every later record of the table is held back until an operator
runs ``bitvelocity schema accept TABLE``. The stored offset stays at the cut, so the sink
resumes from exactly there (docs/decisions/0021).

Each worker keeps its own copy of a table's ``TableSpec``, grown by the columns silver has
and the source sends (an evolution, or one a previous run made): ``tables``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import orjson

from observability.metrics import Metrics
from records.change_events import ChangeEvent
from sinks.postgres.batch import ConsumedRecord
from sinks.postgres.gold_columns import ColumnPairs, mapped_columns, sync_gold_columns
from sinks.postgres.medallion import SILVER_META_COLUMNS
from sinks.postgres.schema_drift import (
    ColumnChange,
    ColumnType,
    Decision,
    Policy,
    decide,
    detect_drift,
    envelope_row_schema,
    silver_column_type,
    source_columns,
)
from sinks.postgres.tables import TABLES, TableSpec

log = logging.getLogger("bitvelocity.schema")

#: Silver's bookkeeping columns: never compared with the source.
BOOKKEEPING_COLUMNS = frozenset((*SILVER_META_COLUMNS, "processed_at"))
_SILVER_COLUMNS = """
    SELECT column_name, data_type, numeric_precision, numeric_scale, character_maximum_length
      FROM information_schema.columns
     WHERE table_schema = 'silver' AND table_name = $1
     ORDER BY ordinal_position
"""
_RECORDED = """
    SELECT decision, accepted_at IS NOT NULL AS accepted, reason FROM ops.schema_changes
     WHERE table_name = $1 AND schema_id = $2
"""
_RECORD = """
    INSERT INTO ops.schema_changes (table_name, schema_id, source_lsn, source_topic,
        source_partition, source_offset, column_name, change, source_type, silver_type,
        target_type, policy, decision, reason)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
    ON CONFLICT (table_name, schema_id, column_name) DO NOTHING
"""
_PAUSED = """
    SELECT 1 FROM ops.schema_changes
     WHERE table_name = $1 AND decision = 'pause' AND accepted_at IS NULL LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class PausedTable:
    """Why a table stopped, and the first record not written."""

    table: str
    schema_id: int
    topic: str
    partition: int
    offset: int
    reason: str


def policy_for(policies: Mapping[str, str], default: str, table: str) -> Policy:
    """The table's drift policy: its own entry, else the default."""
    return Policy(policies.get(table, default))


def silver_data_columns(rows: Sequence[Any]) -> dict[str, ColumnType]:
    """Silver's data columns from ``information_schema.columns`` rows."""
    return {
        r["column_name"]: silver_column_type(
            r["data_type"],
            r["numeric_precision"],
            r["numeric_scale"],
            r["character_maximum_length"],
        )
        for r in rows
        if r["column_name"] not in BOOKKEEPING_COLUMNS
    }


def adopt_columns(
    spec: TableSpec, silver: Mapping[str, ColumnType], source: Mapping[str, ColumnType]
) -> TableSpec:
    """``spec`` grown by the columns silver has and the source sends, appended in silver order."""
    sent = {spec.renames.get(name, name) for name in source}
    extra = tuple(c for c in silver if c not in spec.columns and c in sent)
    return replace(spec, columns=spec.columns + extra) if extra else spec


class SchemaGuard:
    """One worker's view of the tables' schemas: checks, records, pauses, resumes."""

    def __init__(
        self,
        schema_text: Callable[[int], str],
        metrics: Metrics,
        *,
        default_policy: str = "evolve",
        policies: Mapping[str, str] | None = None,
        gold_columns: Mapping[str, str] | None = None,
    ) -> None:
        self._schema_text = schema_text
        self._metrics = metrics
        self._default = default_policy
        self._policies = dict(policies or {})
        self._checked: set[tuple[str, int]] = set()
        self.paused: dict[str, PausedTable] = {}
        #: This worker's table specs (grown by evolutions); the writer and planner use them.
        self.tables: dict[str, TableSpec] = dict(TABLES)
        self._gold_mapping = mapped_columns(gold_columns or {})
        #: Per silver table, the mapped gold columns gold holds (the writer fills them).
        self.gold_columns: dict[str, ColumnPairs] = {}
        #: Called with a table whose spec changed (the writer rebuilds its statements).
        self.on_spec_changed: Callable[[str], None] = lambda _table: None

    async def screen(
        self, connection: asyncpg.Connection, records: list[ConsumedRecord]
    ) -> list[ConsumedRecord]:
        """The records of one partition's batch that may be written: all of them, or those
        before the first record of a paused table (paused here or earlier)."""
        for index, record in enumerate(records):
            event = record.decoded
            if not isinstance(event, ChangeEvent) or event.table not in self.tables:
                continue
            if event.table in self.paused:
                return records[:index]
            if event.schema_id is None or (event.table, event.schema_id) in self._checked:
                continue
            paused = await self._check(connection, record, event)
            if paused is not None:
                self.paused[event.table] = paused
                self._metrics.set_schema_paused(event.table, True)
                return records[:index]
            self._checked.add((event.table, event.schema_id))
        return records

    async def accepted(self, connection: asyncpg.Connection) -> list[PausedTable]:
        """Paused tables an operator accepted since: unpaused here, returned to be re-read."""
        resumed = []
        for table, paused in list(self.paused.items()):
            if await connection.fetchval(_PAUSED, table) is None:
                self.paused.pop(table)
                # Not marked checked: the next record of the schema is checked again, so
                # the spec adopts what the operator's migration made of silver (a column
                # backfilled, a type changed) and the staging table is made anew.
                self._metrics.set_schema_paused(table, False)
                resumed.append(paused)
                log.info(
                    "schema change of %s accepted: resuming at %s[%d] %d",
                    table,
                    paused.topic,
                    paused.partition,
                    paused.offset,
                )
        return resumed

    async def _check(
        self, connection: asyncpg.Connection, record: ConsumedRecord, event: ChangeEvent
    ) -> PausedTable | None:
        """Judge the first record of a (table, schema id) new to this worker: the table
        paused at ``record``, or None once silver and this worker's spec follow the schema."""
        assert event.schema_id is not None
        table, schema_id = event.table, event.schema_id
        recorded = await connection.fetch(_RECORDED, table, schema_id)
        # Decided before (another worker, or before a restart): a pause still waiting holds.
        waiting = [r for r in recorded if r["decision"] == "pause" and not r["accepted"]]
        if waiting:
            return _paused_at(record, table, schema_id, waiting[0]["reason"])
        row = envelope_row_schema(orjson.loads(self._schema_text(schema_id)))
        if row is None:
            return None
        source = source_columns(row)
        spec = self.tables[table]
        silver = silver_data_columns(await connection.fetch(_SILVER_COLUMNS, table))
        changes = [] if recorded else detect_drift(spec, source, silver)
        policy = policy_for(self._policies, self._default, table)
        decisions = [(change, decide(policy, change)) for change in changes]
        pause = await self._apply_and_record(connection, record, event, policy, decisions)
        if pause:
            reason = "; ".join(c.describe() for c in pause)
            return _paused_at(record, table, schema_id, reason)
        if any(d is Decision.EVOLVE for _, d in decisions):
            silver = silver_data_columns(await connection.fetch(_SILVER_COLUMNS, table))
        await self._follow_silver(connection, table, spec, silver, source)
        return None

    async def _apply_and_record(
        self,
        connection: asyncpg.Connection,
        record: ConsumedRecord,
        event: ChangeEvent,
        policy: Policy,
        decisions: list[tuple[ColumnChange, Decision]],
    ) -> list[ColumnChange]:
        """In one transaction, evolve silver (unless a change pauses the table) and record
        every change with its decision. The changes that pause the table, if any."""
        pause = [c for c, d in decisions if d is Decision.PAUSE]
        async with connection.transaction():
            refused = None if pause else await _evolve(connection, event.table, decisions)
            if refused is not None:  # silver could not follow: an operator's call after all
                pause = [refused]
            for change, decision in decisions:
                reason = _reason(change, decision, policy, bool(pause))
                if change is refused:
                    reason = f"{change.describe()}: evolution refused by PostgreSQL, table paused"
                # One change pausing the table pauses all of it: nothing is half-applied.
                final = Decision.PAUSE if pause else decision
                await self._record_change(connection, record, event, policy, change, final, reason)
        return pause

    async def _record_change(
        self,
        connection: asyncpg.Connection,
        record: ConsumedRecord,
        event: ChangeEvent,
        policy: Policy,
        change: ColumnChange,
        decision: Decision,
        reason: str,
    ) -> None:
        """One change in ``ops.schema_changes`` (once per table, schema and column), a metric
        and a log line."""
        await connection.execute(
            _RECORD,
            event.table,
            event.schema_id,
            event.position.lsn,
            record.topic,
            record.partition,
            record.offset,
            change.column,
            change.kind.value,
            _text(change.source),
            _text(change.silver),
            _text(change.target),
            policy.value,
            decision.value,
            reason,
        )
        self._metrics.record_schema_change(event.table, change.kind.value, decision.value)
        log.warning("schema change of %s (schema %d): %s", event.table, event.schema_id, reason)

    async def _follow_silver(
        self,
        connection: asyncpg.Connection,
        table: str,
        spec: TableSpec,
        silver: Mapping[str, ColumnType],
        source: Mapping[str, ColumnType],
    ) -> None:
        """This worker's spec (and the mapped gold columns) adopt silver as it is now."""
        self.tables[table] = adopt_columns(spec, silver, source)
        if table in self._gold_mapping:  # gold follows where BV_SINK__GOLD_COLUMNS says so
            gold_table, pairs = self._gold_mapping[table]
            self.gold_columns[table] = await sync_gold_columns(
                connection, gold_table, pairs, silver
            )
        # Always, once per new schema: silver may have evolved by this worker, by another
        # (its decision recorded first) or by an operator, and a staging table made before
        # holds the old types (a widened numeric would be rounded on its way through).
        self.on_spec_changed(table)


def _paused_at(record: ConsumedRecord, table: str, schema_id: int, reason: str) -> PausedTable:
    """``table`` paused at ``record``, the first of its records not written."""
    return PausedTable(table, schema_id, record.topic, record.partition, record.offset, reason)


async def _evolve(
    connection: asyncpg.Connection,
    table: str,
    decisions: list[tuple[ColumnChange, Decision]],
) -> ColumnChange | None:
    """Apply the EVOLVE decisions, all or none; the change PostgreSQL refused, if any."""
    current: ColumnChange | None = None
    try:
        async with connection.transaction():  # a savepoint: a refusal undoes every one
            for current, decision in decisions:
                if decision is Decision.EVOLVE:
                    assert current.target is not None
                    await connection.execute(
                        "SELECT ops.evolve_silver_column($1, $2, $3)",
                        table,
                        current.column,
                        current.target.sql(),
                    )
    except asyncpg.PostgresError as exc:
        if isinstance(exc, asyncpg.PostgresConnectionError):
            raise
        log.error("silver.%s cannot evolve (%s): %s", table, current, exc)
        return current
    return None


def _text(kind: ColumnType | None) -> str | None:
    return None if kind is None else kind.sql()


def _reason(change: ColumnChange, decision: Decision, policy: Policy, paused: bool) -> str:
    what = change.describe()
    if paused and decision is not Decision.PAUSE:
        return f"{what}: table paused by another change of the same schema"
    return {
        Decision.EVOLVE: f"{what}: silver evolved (policy {policy})",
        Decision.IGNORE: f"{what}: silver keeps its shape, no value altered (policy {policy})",
        Decision.KEEP: f"{what}: silver keeps the column, new rows hold NULL (policy {policy})",
        Decision.PAUSE: f"{what}: table paused until `bitvelocity schema accept` (policy {policy})",
    }[decision]


# -- the operator's side (``bitvelocity schema``) ----------------------------------------------
_LIST = """
    SELECT change_id, detected_at, table_name, schema_id, source_lsn, source_topic,
           source_partition, source_offset, column_name, change, source_type, silver_type,
           target_type, policy, decision, reason, accepted_at, accepted_by
      FROM ops.schema_changes
     WHERE $1::text IS NULL OR table_name = $1
     ORDER BY change_id
"""
_ACCEPT = """
    UPDATE ops.schema_changes SET accepted_at = now(), accepted_by = current_user
     WHERE table_name = $1 AND decision = 'pause' AND accepted_at IS NULL
    RETURNING change_id
"""


_WAITING = """
    SELECT table_name, schema_id, min(detected_at) AS since,
           string_agg(reason, '; ' ORDER BY change_id) AS reason,
           min(source_topic) AS source_topic, min(source_partition) AS source_partition,
           min(source_offset) AS source_offset
      FROM ops.schema_changes
     WHERE decision = 'pause' AND accepted_at IS NULL
     GROUP BY table_name, schema_id
     ORDER BY since, table_name
"""


class UnknownTableError(ValueError):
    """``bitvelocity schema accept`` named a table the medallion sink does not write."""


async def list_schema_changes(
    connection: asyncpg.Connection, table: str | None = None
) -> list[dict[str, Any]]:
    """Every recorded schema change (of ``table``), oldest first."""
    return [dict(row) for row in await connection.fetch(_LIST, table)]


async def paused_tables(connection: asyncpg.Connection) -> list[dict[str, Any]]:
    """The tables paused by a schema change not yet accepted: which schema, since when, why
    and the first record not written (``bitvelocity status``, ``schema changes``)."""
    return [dict(row) for row in await connection.fetch(_WAITING)]


async def accept_schema_changes(connection: asyncpg.Connection, table: str) -> int:
    """Accept the paused changes of ``table`` (after the operator's own migration of silver):
    the workers resume it from where it stopped. Returns how many changes were accepted."""
    if table not in TABLES:
        raise UnknownTableError(
            f"no medallion table {table!r}; tables: {', '.join(sorted(TABLES))}"
        )
    return len(await connection.fetch(_ACCEPT, table))
