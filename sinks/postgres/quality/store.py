"""The database edge of the quality engine (asyncpg): rules, reference lookups, results and
the sweep of pending REFERENCE checks.

Every function takes a connection and runs in whatever transaction the caller holds; none
opens or commits one. The worker writes a batch's silver rows, ``write_results`` and
``save_pending`` in the batch's own transaction, so quality bookkeeping commits exactly when
the rows do. ``sweep_pending`` should also run inside a transaction: it locks the pending
checks it settles (``FOR UPDATE SKIP LOCKED``, so two workers never settle the same check)
and the silver rows it updates.

Identifiers in SQL come only from rules that passed ``SilverCatalog.check_rule``; values
always travel as parameters.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import asyncpg

from quality.engine import (
    MAX_SAMPLES,
    BatchVerdict,
    PendingOutcome,
    PendingReference,
    RuleResult,
    canonical_value,
    pending_lookups,
    resolve_pending,
    settle_row,
    sweep_results,
)
from quality.redaction import json_value
from quality.rules import InvalidRuleError, Rule, RuleType, parse_rule, parse_rules
from sinks.postgres.quality.catalog import SilverCatalog, castable, load_silver_catalog

log = logging.getLogger("bitvelocity.sinks.postgres.quality.store")

_RULES_SQL = """
SELECT rule_id, table_name, column_name, rule_type, rule_config::text AS rule_config,
       severity, is_active
FROM ops.data_quality_rules ORDER BY rule_id
"""
# Inserts and deletes change the count or the id sum; updates bump updated_at (trigger).
_FINGERPRINT_SQL = """
SELECT count(*), max(updated_at), coalesce(sum(rule_id), 0) FROM ops.data_quality_rules
"""
_INSERT_RESULT_SQL = """
INSERT INTO ops.data_quality_results
    (rule_id, checked_at, record_count, failed_count, success_rate, sample_failures, batch_id)
VALUES ($1, coalesce($2, now()), $3, $4, $5, $6::jsonb, $7)
"""
_SAVE_PENDING_SQL = """
INSERT INTO ops.pending_reference_checks
    (table_name, row_key, rule_id, referenced_value, first_seen, deadline)
VALUES ($1, $2::jsonb, $3, $4, $5, $6)
ON CONFLICT (table_name, row_key, rule_id) DO UPDATE
SET referenced_value = EXCLUDED.referenced_value,
    first_seen = EXCLUDED.first_seen,
    deadline = EXCLUDED.deadline
"""
_DELETE_PENDING_SQL = """
DELETE FROM ops.pending_reference_checks
WHERE table_name = $1 AND row_key = $2::jsonb AND rule_id = $3
"""
_DUE_PENDING_SQL = """
SELECT p.table_name, p.row_key::text AS row_key, p.rule_id, p.referenced_value,
       p.first_seen, p.deadline,
       r.table_name AS rule_table, r.column_name, r.rule_type, r.rule_config::text AS rule_config,
       r.severity, r.is_active
FROM ops.pending_reference_checks p
JOIN ops.data_quality_rules r ON r.rule_id = p.rule_id
ORDER BY p.deadline, p.table_name, p.rule_id
LIMIT $1
FOR UPDATE OF p SKIP LOCKED
"""


class RuleCache:
    """The rules of ``ops.data_quality_rules``, reloaded when they change.

    At most once per ``refresh_interval`` (measured with ``clock``, monotonic seconds) it
    runs a one-row fingerprint query; only when the fingerprint differs are the rules and
    the silver catalog read again. A rule inserted while the worker runs therefore takes
    effect within one interval, without a restart. Rules that are malformed or name what
    silver does not have are logged (or passed to ``on_invalid``) and skipped.
    """

    def __init__(
        self,
        refresh_interval: timedelta = timedelta(seconds=5),
        *,
        clock: Callable[[], float] = time.monotonic,
        on_invalid: Callable[[InvalidRuleError], None] | None = None,
    ) -> None:
        self.refresh_interval = refresh_interval.total_seconds()
        self._clock = clock
        self._on_invalid = on_invalid
        self._checked_at: float | None = None
        self._fingerprint: tuple[Any, ...] | None = None
        self._rules: tuple[Rule, ...] = ()
        self._catalog: SilverCatalog | None = None
        self.loads = 0

    @property
    def catalog(self) -> SilverCatalog | None:
        """The silver catalog read with the rules (None before the first load)."""
        return self._catalog

    async def rules_for(self, connection: asyncpg.Connection, table: str) -> list[Rule]:
        """The active, valid rules of ``silver.<table>``, in rule id order."""
        await self.refresh(connection)
        return [rule for rule in self._rules if rule.table_name == table and rule.is_active]

    async def all_rules(self, connection: asyncpg.Connection) -> list[Rule]:
        """Every valid rule, active or not."""
        await self.refresh(connection)
        return list(self._rules)

    async def refresh(self, connection: asyncpg.Connection, *, force: bool = False) -> bool:
        """Reload if the interval has passed and the rules changed; True if reloaded."""
        now = self._clock()
        if (
            not force
            and self._checked_at is not None
            and now - self._checked_at < self.refresh_interval
        ):
            return False
        record = await connection.fetchrow(_FINGERPRINT_SQL)
        fingerprint = tuple(record) if record is not None else None
        self._checked_at = now
        if not force and fingerprint == self._fingerprint:
            return False
        catalog = await load_silver_catalog(connection)
        records = await connection.fetch(_RULES_SQL)
        self._rules = tuple(
            valid_rules(
                parse_rules((dict(r) for r in records), self._report), catalog, self._report
            )
        )
        self._catalog = catalog
        self._fingerprint = fingerprint
        self.loads += 1
        log.info("loaded %d quality rules", len(self._rules))
        return True

    def _report(self, error: InvalidRuleError) -> None:
        if self._on_invalid is None:
            log.warning("skipping quality rule: %s", error)
        else:
            self._on_invalid(error)


def valid_rules(
    rules: Iterable[Rule],
    catalog: SilverCatalog,
    on_invalid: Callable[[InvalidRuleError], None],
) -> list[Rule]:
    """The rules whose tables, columns and reference targets exist in silver."""
    kept: list[Rule] = []
    for rule in rules:
        try:
            catalog.check_rule(rule)
        except InvalidRuleError as exc:
            on_invalid(exc)
        else:
            kept.append(rule)
    return kept


async def lookup_references(
    connection: asyncpg.Connection,
    needed: Mapping[tuple[str, str], set[Any]],
    catalog: SilverCatalog | None = None,
) -> dict[tuple[str, str], set[Any]]:
    """Which of the ``needed`` values exist in ``silver.<table>.<column>`` and are not hard
    deleted (soft-deleted rows still exist). One query per target; values that could not
    be of the column's type are simply not found. Raises ``UnknownColumnError`` for a
    target that is not in the silver catalog (pass ``RuleCache.catalog`` to save a query).
    """
    found: dict[tuple[str, str], set[Any]] = {}
    if not needed:
        return found
    catalog = catalog or await load_silver_catalog(connection)
    for (table, column), values in needed.items():
        cast = catalog.cast_of(table, column)
        catalog.column_type(table, "hard_deleted")
        texts = sorted({canonical_value(v) for v in values if v is not None})
        texts = [text for text in texts if castable(cast, text)]
        if not texts:
            found[(table, column)] = set()
            continue
        # Identifiers are catalog-checked names matching [a-z_][a-z0-9_]*; the cast is ours.
        sql = (
            f'SELECT DISTINCT "{column}"::text FROM {_silver(table)} '  # noqa: S608
            f'WHERE "{column}" = ANY($1::text[]::{cast}[]) AND NOT hard_deleted'
        )
        found[(table, column)] = {record[0] for record in await connection.fetch(sql, texts)}
    return found


async def write_results(
    connection: asyncpg.Connection,
    results: Sequence[RuleResult],
    batch_id: int | None,
    *,
    checked_at: datetime | None = None,
) -> int:
    """Insert one ``ops.data_quality_results`` row per result; ``checked_at`` defaults to the
    transaction's ``now()``. Returns the number of rows written."""
    if not results:
        return 0
    await connection.executemany(
        _INSERT_RESULT_SQL,
        [
            (
                result.rule_id,
                checked_at,
                result.record_count,
                result.failed_count,
                result.success_rate,
                json.dumps(result.sample_failures, default=json_value),
                batch_id,
            )
            for result in results
        ],
    )
    return len(results)


async def save_pending(connection: asyncpg.Connection, pending: Sequence[PendingReference]) -> int:
    """Record pending checks; a newer check of the same row and rule replaces the older."""
    if not pending:
        return 0
    await connection.executemany(
        _SAVE_PENDING_SQL,
        [
            (
                check.table_name,
                _row_key_json(check.row_key),
                check.rule_id,
                check.referenced_value,
                check.first_seen,
                check.deadline,
            )
            for check in pending
        ],
    )
    return len(pending)


async def record_verdict(
    connection: asyncpg.Connection, verdict: BatchVerdict, batch_id: int | None
) -> None:
    """The quality bookkeeping of one batch: its results and its pending checks."""
    await write_results(connection, verdict.results, batch_id)
    await save_pending(connection, verdict.pending)


async def load_due_pending(
    connection: asyncpg.Connection, *, limit: int = 1000
) -> list[PendingReference]:
    """Pending checks to re-check now (every one is due: a target may arrive at any time),
    earliest deadline first, locked against other sweeps. Each carries its rule; ``rule`` is
    None when the rule has become malformed (the sweep drops such checks)."""
    checks: list[PendingReference] = []
    for record in await connection.fetch(_DUE_PENDING_SQL, limit):
        rule: Rule | None
        try:
            rule = parse_rule({**dict(record), "table_name": record["rule_table"]})
        except InvalidRuleError as exc:
            log.warning("pending check of a malformed rule will be dropped: %s", exc)
            rule = None
        checks.append(
            PendingReference(
                table_name=record["table_name"],
                row_key=MappingProxyType(json.loads(record["row_key"])),
                rule_id=record["rule_id"],
                referenced_value=record["referenced_value"],
                first_seen=record["first_seen"],
                deadline=record["deadline"],
                rule=rule,
            )
        )
    return checks


async def delete_pending(
    connection: asyncpg.Connection, pending: Sequence[PendingReference]
) -> int:
    """Forget settled (or obsolete) pending checks."""
    if not pending:
        return 0
    await connection.executemany(
        _DELETE_PENDING_SQL,
        [(c.table_name, _row_key_json(c.row_key), c.rule_id) for c in pending],
    )
    return len(pending)


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What one sweep did. ``obsolete`` checks were dropped without a verdict: their rule is
    gone, inactive or malformed, or their row was deleted, changed or re-evaluated since."""

    resolved: int
    failed: int
    still_pending: int
    obsolete: int
    results: list[RuleResult] = field(default_factory=list)


async def sweep_pending(
    connection: asyncpg.Connection,
    now: datetime,
    *,
    limit: int = 1000,
    batch_id: int | None = None,
    catalog: SilverCatalog | None = None,
    max_samples: int = MAX_SAMPLES,
) -> SweepReport:
    """Re-check pending REFERENCE checks: a found target passes the check, a reached deadline
    fails it. Settled checks update their silver row's score, passed checks and issues,
    are counted in one result row per rule (``checked_at = now``) and are deleted.
    Run it inside a transaction (see the module docstring)."""
    checks = await load_due_pending(connection, limit=limit)
    if not checks:
        return SweepReport(0, 0, 0, 0)
    catalog = catalog or await load_silver_catalog(connection)
    usable, obsolete = _usable_checks(checks, catalog)
    found = await lookup_references(connection, pending_lookups(usable), catalog)
    outcome = resolve_pending(usable, found, now)
    applied, stale = await _settle_rows(connection, outcome, catalog)
    obsolete.extend(stale)
    applied_ids = {id(check) for check in applied}
    settled = PendingOutcome(
        resolved=[c for c in outcome.resolved if id(c) in applied_ids],
        failed=[c for c in outcome.failed if id(c) in applied_ids],
        still_pending=outcome.still_pending,
    )
    results = sweep_results(settled, max_samples=max_samples)
    await write_results(connection, results, batch_id, checked_at=now)
    await delete_pending(connection, [*outcome.resolved, *outcome.failed, *obsolete])
    return SweepReport(
        resolved=len(settled.resolved),
        failed=len(settled.failed),
        still_pending=len(outcome.still_pending),
        obsolete=len(obsolete),
        results=results,
    )


def _usable_checks(
    checks: Sequence[PendingReference], catalog: SilverCatalog
) -> tuple[list[PendingReference], list[PendingReference]]:
    usable: list[PendingReference] = []
    obsolete: list[PendingReference] = []
    for check in checks:
        rule = check.rule
        ok = (
            rule is not None
            and rule.is_active
            and rule.rule_type is RuleType.REFERENCE
            and rule.table_name == check.table_name
        )
        if ok and rule is not None:
            try:
                catalog.check_rule(rule)
                for key_column in check.row_key:
                    catalog.cast_of(check.table_name, key_column)
            except InvalidRuleError as exc:
                log.warning("dropping pending check: %s", exc)
                ok = False
        (usable if ok else obsolete).append(check)
    return usable, obsolete


async def _settle_rows(
    connection: asyncpg.Connection, outcome: PendingOutcome, catalog: SilverCatalog
) -> tuple[list[PendingReference], list[PendingReference]]:
    """Apply settled checks to their silver rows; returns (applied, stale) checks.

    A check is stale when its row is gone or hard deleted, no longer holds the referenced
    value, or already carries a verdict for the rule (it was re-evaluated by the writer)."""
    by_row: dict[tuple[str, str], list[tuple[PendingReference, bool]]] = {}
    for check, ok in [
        *((c, True) for c in outcome.resolved),
        *((c, False) for c in outcome.failed),
    ]:
        by_row.setdefault((check.table_name, _row_key_json(check.row_key)), []).append((check, ok))
    applied: list[PendingReference] = []
    stale: list[PendingReference] = []
    for (table, _), settled in by_row.items():
        row_key = settled[0][0].row_key
        where, params = _key_predicate(table, row_key, catalog)
        row = await connection.fetchrow(
            f"SELECT to_jsonb(s)::text FROM {_silver(table)} s WHERE {where} FOR UPDATE",  # noqa: S608
            *params,
        )
        current = None if row is None else json.loads(row[0], parse_float=Decimal)
        fresh: list[tuple[Rule, bool]] = []
        for check, ok in settled:
            rule = check.rule
            if rule is None or current is None or current.get("hard_deleted"):
                stale.append(check)
                continue
            value = current.get(rule.column_name)
            already = (
                rule.check in current["quality_checks_passed"]
                or rule.issue in (current["quality_issues"])
            )
            if value is None or canonical_value(value) != check.referenced_value or already:
                stale.append(check)
                continue
            fresh.append((rule, ok))
            applied.append(check)
        if not fresh or current is None:
            continue
        quality = settle_row(current["quality_checks_passed"], current["quality_issues"], fresh)
        offset = len(params)
        await connection.execute(
            f"UPDATE {_silver(table)} SET data_quality_score = ${offset + 1}, "  # noqa: S608
            f"quality_checks_passed = ${offset + 2}, quality_issues = ${offset + 3} "
            f"WHERE {where}",
            *params,
            quality.score,
            list(quality.passed),
            list(quality.issues),
        )
    return applied, stale


def _key_predicate(
    table: str, row_key: Mapping[str, Any], catalog: SilverCatalog
) -> tuple[str, list[str]]:
    """``"k1" = $1::text::bigint AND ...`` with catalog-checked names and casts."""
    parts: list[str] = []
    params: list[str] = []
    for index, (column, value) in enumerate(sorted(row_key.items()), start=1):
        cast = catalog.cast_of(table, column)
        parts.append(f'"{column}" = ${index}::text::{cast}')
        params.append(canonical_value(value))
    return " AND ".join(parts), params


def _silver(table: str) -> str:
    return f'silver."{table}"'


def _row_key_json(row_key: Mapping[str, Any]) -> str:
    return json.dumps({column: json_value(value) for column, value in row_key.items()})
