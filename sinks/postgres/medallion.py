"""The transactional medallion writer: one partition's batch, one PostgreSQL transaction.

Order inside the transaction (DESIGN.md section 5): COPY bronze rows, upsert silver rows
through a staging table (a row changes only for a newer source position; deletes set
``deleted_at``; TOAST-unchanged columns keep the stored value), move gold order facts
(type 2: close the current row, open a new one, only for rows without ERROR issues),
write quality results and the batch's accounting row, then the offsets compare-and-set.
Everything commits together or nothing does: invariants I1, I2 and I6.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import asyncpg

from sinks.postgres.batch import BRONZE_COLUMNS, PlannedBatch, SilverChange, TruncateMark
from sinks.postgres.offsets import OffsetStore, PartitionClaim
from sinks.postgres.tables import TABLES, TableSpec

PROCESSING_VERSION = 1
_META_COLUMNS = (
    "hard_deleted",
    "source_lsn",
    "source_partition",
    "source_offset",
    "source_tx_id",
    "source_committed_at",
    "data_quality_score",
    "quality_checks_passed",
    "quality_issues",
    "source_bronze_id",
    "processing_version",
)
#: Silver's bookkeeping columns (all but ``processed_at``), as other modules name them.
SILVER_META_COLUMNS = _META_COLUMNS
_STAGE_EXTRA = ("unchanged_columns",)
_QUALITY_COLUMNS = ("data_quality_score", "quality_checks_passed", "quality_issues")


@dataclass(frozen=True, slots=True)
class RowQuality:
    """What the quality gate says about one silver row."""

    score: Decimal
    passed: tuple[str, ...]
    issues: tuple[str, ...]


class QualityGate(Protocol):
    """Checks a table's rows inside the batch's transaction (and records its results there)."""

    async def check(
        self,
        connection: asyncpg.Connection,
        table: str,
        rows: Sequence[dict[str, Any]],
        event_times: Sequence[datetime],
        batch_id: int,
    ) -> list[RowQuality]: ...

    async def sweep(self, connection: asyncpg.Connection) -> None:
        """Settle deferred checks (REFERENCE targets that arrived later, or never)."""


#: The verdict written for a hard delete that silver never saw alive (nothing to judge).
UNJUDGED = RowQuality(Decimal("1.00"), (), ())


@dataclass(frozen=True)
class BatchOutcome:
    """What one committed batch wrote."""

    claim: PartitionClaim
    batch_id: int
    bronze_rows: int
    silver_rows: int
    dead_letters: int
    filtered: int


def _stage_name(spec: TableSpec) -> str:
    return f"bv_stage_{spec.name}"


def _stage_columns(spec: TableSpec) -> tuple[str, ...]:
    return (*spec.columns, *_META_COLUMNS, *_STAGE_EXTRA)


def _create_stage_sql(spec: TableSpec) -> str:
    return (
        f"CREATE TEMP TABLE IF NOT EXISTS {_stage_name(spec)} "
        f"(LIKE {spec.silver_table} INCLUDING DEFAULTS, unchanged_columns text[] NOT NULL) "
        "ON COMMIT DELETE ROWS"
    )


def _upsert_sql(spec: TableSpec) -> str:
    """INSERT ... SELECT from staging, merging unchanged/hard-delete columns with the stored row.

    The stored row is looked up per staged row (``stored_row``): a plain join let the planner
    hash the whole silver table for a batch of tens of rows."""
    first_key = spec.key[0]
    select: list[str] = []
    for column in spec.columns:
        if column in spec.key:
            select.append(f"s.{column}")
        elif column == "deleted_at":
            select.append(
                "CASE WHEN s.hard_deleted THEN coalesce(cur.deleted_at, s.deleted_at) "
                "WHEN 'deleted_at' = ANY(s.unchanged_columns) THEN cur.deleted_at "
                "ELSE s.deleted_at END"
            )
        else:
            select.append(
                f"CASE WHEN '{column}' = ANY(s.unchanged_columns) "
                f"OR (s.hard_deleted AND cur.{first_key} IS NOT NULL) "
                f"THEN cur.{column} ELSE s.{column} END"
            )
    for column in _META_COLUMNS:
        if column in _QUALITY_COLUMNS:  # a hard delete keeps the verdict of the last state
            select.append(
                f"CASE WHEN s.hard_deleted AND cur.{first_key} IS NOT NULL "
                f"THEN cur.{column} ELSE s.{column} END"
            )
        else:
            select.append(f"s.{column}")
    target_columns = (*spec.columns, *_META_COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in target_columns if c not in spec.key)
    table = spec.silver_table
    # Identifiers come from the TableSpec constants above, never from input.
    return (
        f"INSERT INTO {table} ({', '.join(target_columns)}, processed_at) "  # noqa: S608
        f"SELECT {', '.join(select)}, now() FROM {_stage_name(spec)} AS s "
        f"LEFT JOIN LATERAL ({stored_row(table, spec.key)}) AS cur ON true "
        f"ON CONFLICT ({', '.join(spec.key)}) DO UPDATE SET {updates}, processed_at = now() "
        f"WHERE ({table}.source_lsn, {table}.source_offset) "
        f"< (EXCLUDED.source_lsn, EXCLUDED.source_offset)"
    )


def stored_row(
    table: str,
    key: Sequence[str],
    *,
    alias: str = "stored",
    outer: str = "s",
    columns: str = "*",
    where: str = "",
) -> str:
    """The row of ``table`` (as ``alias``) under the key of the outer row ``outer`` and
    matching ``where``, as a subquery for a LATERAL join: one index probe per outer row,
    whatever the table's size.

    A plain join against a temporary staging table (no statistics: ~200 rows assumed) let
    PostgreSQL hash the whole table, and every partition of a partitioned one, while the
    table held under ~100,000 rows: 6 ms instead of 1.5 ms for a 60-row batch at 20,000
    silver orders, and growing with the table. ``OFFSET 0`` keeps the planner from
    flattening the subquery back into that join.
    """
    conditions = [*(f"{alias}.{k} = {outer}.{k}" for k in key), *([where] if where else [])]
    return f"SELECT {columns} FROM {table} AS {alias} WHERE {' AND '.join(conditions)} OFFSET 0"  # noqa: S608


#: The key of an order in silver and of its facts in gold.
_ORDER_KEY = ("order_id", "order_date")


# Gold order facts, type 2. Only rows whose silver state is this batch's change (the
# upsert above won) and that carry no ERROR issue move gold.
_GOLD_INCOMING = f"""
    SELECT o.order_id, o.order_date, o.customer_id, o.status, o.currency, o.total_amount,
           (o.status IN ('CONFIRMED', 'SHIPPED', 'DELIVERED') AND o.deleted_at IS NULL)
               AS is_revenue_bearing,
           o.deleted_at IS NOT NULL AS is_deleted,
           round(o.total_amount * coalesce((
               SELECT r.rate_to_usd FROM ref.currency_rates AS r
                WHERE r.currency = o.currency AND r.valid_from <= o.order_date
                ORDER BY r.valid_from DESC LIMIT 1), 1), 2) AS total_amount_usd,
           o.source_committed_at, o.source_lsn, o.source_bronze_id /*mapped*/
      FROM bv_stage_orders AS s
     CROSS JOIN LATERAL ({stored_row("silver.orders", _ORDER_KEY)}) AS o
     WHERE o.source_lsn = s.source_lsn AND o.source_offset = s.source_offset
       AND NOT EXISTS (SELECT 1 FROM unnest(o.quality_issues) AS i WHERE i LIKE 'ERROR:%')
"""  # noqa: S608 - composed from constants


def _gold_close(incoming: str, mapped: Sequence[str] = ()) -> str:
    """Close the current fact of each incoming order whose tracked columns changed (a
    mapped column is tracked too: its new value opens a new fact).

    Each fact is found by its own index probe, then updated by its row id: joined to the
    batch, PostgreSQL scanned all of ``gold.order_facts`` while it had no statistics yet
    (a new warehouse: 290 ms to 1.4 s a batch in a benchmark run)."""
    tracked = ("customer_id", "status", "currency", "total_amount", "is_deleted", *mapped)
    changed = (
        f"f.is_current AND ({', '.join(f'f.{c}' for c in tracked)}) "
        f"IS DISTINCT FROM ({', '.join(f'i.{c}' for c in tracked)})"
    )
    fact = stored_row(
        "gold.order_facts",
        _ORDER_KEY,
        alias="f",
        outer="i",
        columns="f.ctid AS fact",
        where=changed,
    )
    return f"""
    WITH incoming AS ({incoming}),
    closing AS (
        SELECT c.fact, i.source_committed_at
          FROM incoming AS i
         CROSS JOIN LATERAL ({fact}) AS c)
    UPDATE gold.order_facts AS f
       SET valid_to = closing.source_committed_at, is_current = false
      FROM closing
     WHERE f.ctid = closing.fact
"""  # noqa: S608


def _gold_open(incoming: str, mapped: Sequence[str] = ()) -> str:
    """Open a current fact for each incoming order that has none (after the close); the
    current fact is probed per order, as in ``_gold_close``."""
    columns = "".join(f", {c}" for c in mapped)
    values = "".join(f", i.{c}" for c in mapped)
    current = stored_row(
        "gold.order_facts",
        _ORDER_KEY,
        outer="i",
        columns="true AS found",
        where="stored.is_current",
    )
    return f"""
    WITH incoming AS ({incoming})
    INSERT INTO gold.order_facts (order_id, order_date, customer_id, status, currency,
        total_amount, total_amount_usd, is_revenue_bearing, is_deleted, valid_from, valid_to,
        is_current, source_lsn, source_bronze_id, lineage_id{columns})
    SELECT i.order_id, i.order_date, i.customer_id, i.status, i.currency, i.total_amount,
           i.total_amount_usd, i.is_revenue_bearing, i.is_deleted, i.source_committed_at, NULL,
           true, i.source_lsn, i.source_bronze_id, $1{values}
      FROM incoming AS i
      LEFT JOIN LATERAL ({current}) AS current ON true
     WHERE current.found IS NULL
"""  # noqa: S608


# The orders a truncate deleted (their silver position is the truncate's): gold moves them
# exactly as it moves a delete, so their facts close and a deleted fact opens.
def _truncated_incoming(incoming: str, first: int) -> str:
    """The orders a truncate just deleted (parameters ``$first`` on: its position)."""
    a, b, c, d = (f"${n}" for n in range(first, first + 4))
    # Composed from constants and parameter numbers, never from input.
    return incoming.split("FROM bv_stage_orders", 1)[0] + (  # noqa: S608
        f"FROM silver.orders AS o WHERE o.source_partition = {a} AND o.source_offset = {b} "  # noqa: S608
        f"AND o.source_lsn = {c} AND o.source_bronze_id = {d} "
        "AND NOT EXISTS (SELECT 1 FROM unnest(o.quality_issues) AS i WHERE i LIKE 'ERROR:%')"
    )


@dataclass(frozen=True, slots=True)
class GoldStatements:
    """The type-2 statements of ``gold.order_facts``, with the mapped columns gold holds
    (``BV_SINK__GOLD_COLUMNS``, 0021): ``(silver column, gold column)`` pairs. Identifiers
    come from the settings' validated mapping and the table's own columns, never from input."""

    close: str
    open: str
    close_truncated: str
    open_truncated: str

    @classmethod
    def build(cls, mapped: Sequence[tuple[str, str]] = ()) -> GoldStatements:
        incoming = _GOLD_INCOMING.replace(
            "/*mapped*/", "".join(f", o.{s} AS {g}" for s, g in mapped)
        )
        gold = [g for _, g in mapped]
        return cls(
            _gold_close(incoming, gold),
            _gold_open(incoming, gold),
            _gold_close(_truncated_incoming(incoming, 1), gold),
            _gold_open(_truncated_incoming(incoming, 2), gold),
        )


_RECORD_TRUNCATE = """
    INSERT INTO ops.source_truncations (table_name, source_lsn, source_topic, source_partition,
        source_offset, source_tx_id, committed_at, source_bronze_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT DO NOTHING
"""


def _truncate_sql(spec: TableSpec) -> str:
    """Every row of the table older than the truncate: deleted at the truncate's position.

    Moving the row's position to the truncate's also makes a late change from before the
    truncate lose the upsert's (LSN, offset) guard, as it would against a delete.
    """
    return (
        f"UPDATE {spec.silver_table} SET "  # noqa: S608 - identifiers from TableSpec
        "deleted_at = coalesce(deleted_at, $1), hard_deleted = true, source_lsn = $2, "
        "source_partition = $3, source_offset = $4, source_tx_id = $5, "
        "source_committed_at = $1, source_bronze_id = $6, processed_at = now() "
        "WHERE NOT hard_deleted AND source_lsn < $2"
    )


def _truncate_barrier_sql(spec: TableSpec) -> str:
    """Rows this batch upserted from before the table's newest truncate: deleted as by it.

    A truncate sits on one partition while the rows' changes hash over all of them, so a
    change older than a truncate another partition already applied can arrive after it.
    """
    key_match = " AND ".join(f"t.{k} = s.{k}" for k in spec.key)
    return (
        f"UPDATE {spec.silver_table} AS t SET "  # noqa: S608 - identifiers from TableSpec
        "deleted_at = coalesce(t.deleted_at, x.committed_at), hard_deleted = true, "
        "source_lsn = x.source_lsn, source_partition = x.source_partition, "
        "source_offset = x.source_offset, source_tx_id = x.source_tx_id, "
        "source_committed_at = x.committed_at, source_bronze_id = x.source_bronze_id, "
        "processed_at = now() "
        f"FROM {_stage_name(spec)} AS s, (SELECT * FROM ops.source_truncations "
        f"WHERE table_name = '{spec.name}' ORDER BY source_lsn DESC LIMIT 1) AS x "
        f"WHERE {key_match} AND NOT t.hard_deleted AND t.source_lsn < x.source_lsn"
    )


_ACCOUNT = """
    INSERT INTO ops.sink_batches (group_id, topic, partition, first_offset, last_offset,
        consumed, bronze_rows, dead_letters, filtered, silver_rows, worker)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    RETURNING batch_id
"""
LINEAGE_EDGES = [
    *((f"postgres.public.{t}", f"bronze.{t}", "CDC_CAPTURE", 1) for t in TABLES),
    *((f"bronze.{t}", f"silver.{t}", "TYPED_UPSERT", 2) for t in TABLES),
    ("silver.orders", "gold.order_facts", "SCD2_FACT", 3),
    ("gold.order_facts", "gold.daily_sales", "AGGREGATE", 4),
]


class MedallionWriter:
    """Writes planned batches; one instance per worker, one staging set per connection."""

    def __init__(
        self,
        offsets: OffsetStore,
        quality: QualityGate,
        *,
        after_bronze: Callable[[], None] = lambda: None,
        tables: Mapping[str, TableSpec] = TABLES,
        gold_columns: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    ) -> None:
        self.offsets = offsets
        self.quality = quality
        #: Called inside the transaction once bronze is copied (the fault tests' crash point).
        self._after_bronze = after_bronze
        #: Per silver table, the mapped gold columns gold holds (the schema guard fills it).
        self.gold_columns: Mapping[str, Sequence[tuple[str, str]]] = (
            {} if gold_columns is None else gold_columns  # the guard's own, filled later
        )
        self._gold = GoldStatements.build(self.gold_columns.get("orders", ()))
        #: The specs to write by; a schema evolution grows one (then ``respec``).
        self.tables = tables
        self._upserts = {name: _upsert_sql(spec) for name, spec in tables.items()}
        self._truncates = {name: _truncate_sql(spec) for name, spec in tables.items()}
        self._barriers = {name: _truncate_barrier_sql(spec) for name, spec in tables.items()}
        #: Each table's spec version (``respec`` bumps it) and, per connection, the version
        #: its staging table was made at: one made before silver evolved is made again.
        self._versions: dict[str, int] = dict.fromkeys(tables, 0)
        self._staged: weakref.WeakKeyDictionary[asyncpg.Connection, dict[str, int]] = (
            weakref.WeakKeyDictionary()
        )
        self._lineage_id: int | None = None

    def respec(self, table: str) -> None:
        """Silver ``table`` evolved and its spec grew: rebuild its statements and staging."""
        spec = self.tables[table]
        if table == "orders":  # and gold's mapped columns with it
            self._gold = GoldStatements.build(self.gold_columns.get("orders", ()))
        self._upserts[table] = _upsert_sql(spec)
        self._truncates[table] = _truncate_sql(spec)
        self._barriers[table] = _truncate_barrier_sql(spec)
        self._versions[table] += 1

    async def prepare(self, connection: asyncpg.Connection) -> None:
        """Per-connection set-up: temporary staging tables, the lineage id of gold facts,
        and the backend warmed for the write statements (``_warm``)."""
        for spec in self.tables.values():
            await connection.execute(_create_stage_sql(spec))
        self._staged[connection] = dict(self._versions)
        self._lineage_id = await connection.fetchval(
            "SELECT lineage_id FROM ops.data_lineage "
            "WHERE source_dataset = 'silver.orders' AND target_dataset = 'gold.order_facts'"
        )
        await self._warm(connection)

    async def _warm(self, connection: asyncpg.Connection) -> None:
        """Run every write statement once with no rows, in a transaction rolled back: a new
        backend loads the catalog of the tables, their indexes and partitions on first use,
        and asyncpg introspects a COPY target's column types on its first COPY. Without
        this the first batch on a connection paid both: 200-545 ms for the first takes of
        a benchmark's latency run with 2 lanes."""
        transaction = connection.transaction()
        await transaction.start()
        try:
            for name, spec in self.tables.items():
                await connection.copy_records_to_table(
                    name, schema_name="bronze", records=[], columns=BRONZE_COLUMNS
                )
                await connection.copy_records_to_table(
                    _stage_name(spec), records=[], columns=_stage_columns(spec)
                )
                await connection.execute(self._upserts[name])
                await connection.execute(self._barriers[name])
            await connection.execute(self._gold.close)
            await connection.execute(self._gold.open, self._lineage_id)
        finally:
            await transaction.rollback()

    async def write(
        self, connection: asyncpg.Connection, claim: PartitionClaim, plan: PlannedBatch
    ) -> BatchOutcome:
        """Commit ``plan`` and move the offset to ``plan.last_offset + 1``, atomically."""
        async with connection.transaction():
            batch_id = await connection.fetchval(
                _ACCOUNT,
                self.offsets.group_id,
                plan.topic,
                plan.partition,
                plan.first_offset,
                plan.last_offset,
                plan.consumed,
                plan.bronze_rows,
                len(plan.dead_letters),
                plan.filtered,
                plan.silver_rows,
                self.offsets.worker_id,
            )
            for table, rows in plan.bronze.items():
                await connection.copy_records_to_table(
                    table, schema_name="bronze", records=rows, columns=BRONZE_COLUMNS
                )
            self._after_bronze()
            for table, changes in plan.silver.items():
                await self._write_silver(connection, self.tables[table], changes, batch_id)
            for mark in plan.truncates:  # after the upserts: it deletes what came before it
                await self._apply_truncate(connection, plan.topic, mark)
            claim = await self.offsets.advance(connection, claim, plan.last_offset + 1)
        return BatchOutcome(
            claim,
            batch_id,
            plan.bronze_rows,
            plan.silver_rows,
            len(plan.dead_letters),
            plan.filtered,
        )

    async def _write_silver(
        self,
        connection: asyncpg.Connection,
        spec: TableSpec,
        changes: dict[tuple[Any, ...], SilverChange],
        batch_id: int,
    ) -> None:
        staged = self._staged.setdefault(connection, {})
        if staged.get(spec.name) != self._versions[spec.name]:
            await connection.execute(f"DROP TABLE IF EXISTS pg_temp.{_stage_name(spec)}")
            await connection.execute(_create_stage_sql(spec))
            # asyncpg keeps the column types of a COPY's target with its cached statement:
            # without this, an int -> bigint widening would still be sent as int4.
            await connection.reload_schema_state()
            staged[spec.name] = self._versions[spec.name]
        ordered = list(changes.values())
        # A hard delete carries at most the key: nothing to judge, and its stored verdict
        # stays (see the upsert). Only live rows go through the quality gate.
        live = [c for c in ordered if not c.hard_deleted]
        judged = iter(
            await self.quality.check(
                connection,
                spec.name,
                [c.row for c in live],
                [c.committed_at for c in live],
                batch_id,
            )
        )
        verdicts = [UNJUDGED if c.hard_deleted else next(judged) for c in ordered]
        records = [
            (
                *spec.values_of(change.row),
                change.hard_deleted,
                change.lsn,
                change.partition,
                change.offset,
                change.tx_id,
                change.committed_at,
                verdict.score,
                list(verdict.passed),
                list(verdict.issues),
                change.bronze_id,
                PROCESSING_VERSION,
                sorted(change.unchanged),
            )
            for change, verdict in zip(ordered, verdicts, strict=True)
        ]
        await connection.copy_records_to_table(
            _stage_name(spec), records=records, columns=_stage_columns(spec)
        )
        await connection.execute(self._upserts[spec.name])
        await connection.execute(self._barriers[spec.name])
        if spec.name == "orders":
            await connection.execute(self._gold.close)
            await connection.execute(self._gold.open, self._lineage_id)

    async def _apply_truncate(
        self, connection: asyncpg.Connection, topic: str, mark: TruncateMark
    ) -> None:
        """Record the truncate and delete silver's older rows, alone against other writers
        of the table: a batch of another partition written at the same time (another lane
        or worker) neither sees this truncate in its barrier nor has its rows seen by this
        update, so its rows from before the truncate stayed live. SHARE ROW EXCLUSIVE waits
        for their transactions to commit and holds new ones until this one has."""
        silver = self.tables[mark.table].silver_table
        await connection.execute(f"LOCK TABLE {silver} IN SHARE ROW EXCLUSIVE MODE")
        await connection.execute(
            _RECORD_TRUNCATE,
            mark.table,
            mark.lsn,
            topic,
            mark.partition,
            mark.offset,
            mark.tx_id,
            mark.committed_at,
            mark.bronze_id,
        )
        await connection.execute(
            self._truncates[mark.table],
            mark.committed_at,
            mark.lsn,
            mark.partition,
            mark.offset,
            mark.tx_id,
            mark.bronze_id,
        )
        if mark.table == "orders":
            where = (mark.partition, mark.offset, mark.lsn, mark.bronze_id)
            await connection.execute(self._gold.close_truncated, *where)
            await connection.execute(self._gold.open_truncated, self._lineage_id, *where)


async def register_lineage(
    connection: asyncpg.Connection, extra: Sequence[tuple[str, str, str, int]] = ()
) -> None:
    """Record every edge the medallion pipeline writes, plus ``extra`` ones (idempotent)."""
    await connection.executemany(
        "INSERT INTO ops.data_lineage (source_dataset, target_dataset, transformation_type, "
        "dependency_level) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (source_dataset, target_dataset, transformation_type) DO NOTHING",
        [*LINEAGE_EDGES, *extra],
    )
