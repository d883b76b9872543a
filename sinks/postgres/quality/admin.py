"""Rule administration and reporting for people (the ``bitvelocity quality`` commands).

Kept apart from ``store``, which serves the workers' hot path: these queries run once per
command. A rule added here is validated exactly as a worker would validate it (parsing,
then the silver catalog) before it is inserted, so a typo is refused at the prompt instead
of being skipped later by every worker.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from config.errors import PermanentError
from quality.engine import success_rate
from quality.rules import InvalidRuleError, Rule, build_rule, parse_rules
from sinks.postgres.quality.catalog import load_silver_catalog


class DuplicateRuleError(PermanentError):
    """A rule of the same type already exists on the column (one per table, column, type)."""


@dataclass(frozen=True, slots=True)
class RuleReport:
    """One rule's checks over a period, with the latest redacted failure samples."""

    rule: Rule
    checks: int
    failures: int
    success_rate: Decimal | None
    pending: int
    last_checked: datetime | None
    latest_samples: list[dict[str, Any]]


_LIST_SQL = """
SELECT rule_id, table_name, column_name, rule_type, rule_config::text AS rule_config,
       severity, is_active
FROM ops.data_quality_rules ORDER BY rule_id
"""
_REPORT_SQL = """
SELECT r.rule_id,
       coalesce(sum(q.record_count), 0)::bigint AS checks,
       coalesce(sum(q.failed_count), 0)::bigint AS failures,
       max(q.checked_at) AS last_checked,
       (SELECT count(*) FROM ops.pending_reference_checks p WHERE p.rule_id = r.rule_id)
           AS pending,
       (SELECT l.sample_failures::text FROM ops.data_quality_results l
         WHERE l.rule_id = r.rule_id AND l.checked_at >= now() - $1::interval
           AND l.failed_count > 0
         ORDER BY l.checked_at DESC, l.check_id DESC LIMIT 1) AS latest_samples
FROM ops.data_quality_rules r
LEFT JOIN ops.data_quality_results q
       ON q.rule_id = r.rule_id AND q.checked_at >= now() - $1::interval
GROUP BY r.rule_id
"""
_INSERT_RULE_SQL = """
INSERT INTO ops.data_quality_rules
    (table_name, column_name, rule_type, rule_config, severity, is_active)
VALUES ($1, $2, $3, $4::jsonb, $5, $6)
ON CONFLICT (table_name, column_name, rule_type) DO NOTHING
RETURNING rule_id
"""


async def list_rules(
    connection: asyncpg.Connection, invalid: list[InvalidRuleError] | None = None
) -> list[Rule]:
    """Every rule that parses; malformed ones are appended to ``invalid`` when given."""
    records = await connection.fetch(_LIST_SQL)
    sink = invalid.append if invalid is not None else None
    return parse_rules((dict(r) for r in records), sink)


async def rule_report(connection: asyncpg.Connection, since: timedelta) -> list[RuleReport]:
    """Per rule, the checks written in the last ``since`` (by the database clock)."""
    rules = {rule.rule_id: rule for rule in await list_rules(connection)}
    reports: list[RuleReport] = []
    for record in await connection.fetch(_REPORT_SQL, since):
        rule = rules.get(record["rule_id"])
        if rule is None:
            continue
        checks, failures = int(record["checks"]), int(record["failures"])
        reports.append(
            RuleReport(
                rule=rule,
                checks=checks,
                failures=failures,
                success_rate=success_rate(checks, failures) if checks else None,
                pending=int(record["pending"]),
                last_checked=record["last_checked"],
                latest_samples=json.loads(record["latest_samples"] or "[]"),
            )
        )
    return sorted(reports, key=lambda report: report.rule.rule_id)


async def add_rule(
    connection: asyncpg.Connection,
    *,
    table: str,
    column: str,
    rule_type: str,
    config: Mapping[str, Any] | str,
    severity: str,
    active: bool = True,
) -> Rule:
    """Validate a new rule like a worker would, then insert it; returns it with its id.

    Raises ``InvalidRuleError`` (malformed, or naming what silver lacks) or
    ``DuplicateRuleError``.
    """
    candidate = build_rule(
        rule_id=0,
        table_name=table,
        column_name=column,
        rule_type=rule_type,
        config=config,
        severity=severity,
        is_active=active,
    )
    (await load_silver_catalog(connection)).check_rule(candidate)
    rule_id = await connection.fetchval(
        _INSERT_RULE_SQL,
        candidate.table_name,
        candidate.column_name,
        str(candidate.rule_type),
        json.dumps(dict(candidate.config)),
        str(candidate.severity),
        candidate.is_active,
    )
    if rule_id is None:
        raise DuplicateRuleError(
            f"a {candidate.rule_type} rule on {table}.{column} exists already; "
            "see `bitvelocity quality rules` and change that one with SQL instead"
        )
    return build_rule(
        rule_id=rule_id,
        table_name=candidate.table_name,
        column_name=candidate.column_name,
        rule_type=candidate.rule_type,
        config=candidate.config,
        severity=candidate.severity,
        is_active=candidate.is_active,
    )
