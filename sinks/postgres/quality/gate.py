"""The quality gate the medallion writer calls inside each batch's transaction.

It loads the table's active rules (hot-reloaded by ``RuleCache``), looks up REFERENCE
targets in silver, scores every row with the pure engine, writes one result row per rule
for the batch and parks references whose target has not arrived yet; ``sweep`` settles
them later (found: passed; ``reference_grace_period`` after the first check: failed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from config.settings import Settings
from quality.engine import evaluate_batch, references_needed
from sinks.postgres.medallion import RowQuality
from sinks.postgres.quality.store import RuleCache, lookup_references, record_verdict, sweep_pending
from sinks.postgres.tables import TABLES

PERFECT = RowQuality(Decimal("1.00"), (), ())


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RulesQualityGate:
    """Rules from ``ops.data_quality_rules`` applied to each batch (a ``QualityGate``)."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], datetime] = _utc_now,
        refresh_interval: timedelta = timedelta(seconds=2),
    ) -> None:
        self._grace = settings.windows.reference_grace_period
        self._clock = clock
        self._rules = RuleCache(refresh_interval)

    async def check(
        self,
        connection: asyncpg.Connection,
        table: str,
        rows: Sequence[dict[str, Any]],
        event_times: Sequence[datetime],
        batch_id: int,
    ) -> list[RowQuality]:
        rules = await self._rules.rules_for(connection, table)
        if not rules:
            return [PERFECT] * len(rows)
        needed = references_needed(table, rows, rules)
        found = (
            await lookup_references(connection, needed, catalog=self._rules.catalog)
            if needed
            else {}
        )
        now = self._clock()
        verdict = evaluate_batch(
            table,
            rows,
            rules,
            found,
            # The grace of a missing reference runs from when the pipeline first checks
            # it, not from the source event: a backfill of old changes must not fail every
            # reference whose target simply sits in a later batch of the same backfill.
            event_times=[max(now, event_time) for event_time in event_times],
            now=now,
            grace=self._grace,
            key_columns=TABLES[table].key,
        )
        await record_verdict(connection, verdict, batch_id)
        return [RowQuality(row.score, row.passed, row.issues) for row in verdict.rows]

    async def sweep(self, connection: asyncpg.Connection) -> None:
        """Settle parked REFERENCE checks whose target arrived or whose grace ran out."""
        await sweep_pending(connection, self._clock(), catalog=self._rules.catalog)
