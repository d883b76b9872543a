"""The pure quality engine: score silver rows against rules, and settle pending references.

No I/O and no clock: ``now`` is passed in, references are looked up by the caller
(``references_needed`` says what to look up, ``store.lookup_references`` does it) and the
answers are passed back as ``found``. Invariants kept for every row:

* every active rule of the table is either *applied* (passed or failed), *pending* (a
  REFERENCE whose target may still arrive) or *not applicable* (a NULL seen by RANGE,
  PATTERN or REFERENCE; only NOT_NULL fails NULLs);
* ``score = passed / applied`` rounded half-up to two decimals, 1.00 when nothing applied;
* ``issues`` holds exactly the failed checks, ``"<SEVERITY>:<TYPE>:<column>"`` (gold views
  filter on ``'ERROR:%'``), ``passed`` exactly the passed ones, ``"<TYPE>:<column>"``;
  so a pending check settled later only appends to one of them and the score is
  recomputed from their lengths (``settle_row``).

A missing reference is pending while ``event_time + grace > now`` and failed from the
instant ``now`` reaches that deadline.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any
from uuid import UUID

from config.errors import PermanentError
from quality.redaction import failure_sample
from quality.rules import Rule, RuleType

#: Primary-key columns of the silver tables (0002_silver.sql): how a sample or a pending
#: check names its row.
SILVER_KEY_COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "categories": ("category_id",),
        "customers": ("customer_id",),
        "products": ("product_id",),
        "orders": ("order_id", "order_date"),
        "order_items": ("order_item_id",),
        "payments": ("payment_id",),
    }
)
MAX_SAMPLES = 5
_CENT = Decimal("0.01")
_BASIS_POINT = Decimal("0.0001")
ONE = Decimal("1.00")

Found = Mapping[tuple[str, str], set[Any]]


class UnknownTableError(PermanentError):
    """Rules apply to a table whose key columns are not known, so rows cannot be named."""


class NaiveDatetimeError(ValueError):
    """A datetime without a timezone reached the engine: its instant is ambiguous."""


@dataclass(frozen=True, slots=True)
class PendingReference:
    """A REFERENCE check whose target row had not arrived when its row was evaluated.

    ``referenced_value`` is the canonical text of the value (``canonical_value``), as
    stored in ``ops.pending_reference_checks``. ``rule`` is the rule itself, so the check
    can be resolved and labelled without another lookup (the store fills it on load).
    """

    table_name: str
    row_key: Mapping[str, Any]
    rule_id: int
    referenced_value: str
    first_seen: datetime
    deadline: datetime
    rule: Rule | None = field(default=None, compare=False)

    @property
    def reference(self) -> tuple[str, str]:
        return self._rule().reference

    def _rule(self) -> Rule:
        if self.rule is None:
            raise ValueError(
                f"pending check of rule {self.rule_id} on {self.table_name} {dict(self.row_key)} "
                "carries no rule; load it with store.load_due_pending"
            )
        return self.rule


@dataclass(frozen=True, slots=True)
class RowVerdict:
    score: Decimal
    passed: tuple[str, ...]
    issues: tuple[str, ...]
    has_error: bool
    pending: tuple[PendingReference, ...] = ()


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One ``ops.data_quality_results`` row: a rule's tally over one batch (or one sweep)."""

    rule_id: int
    record_count: int
    failed_count: int
    success_rate: Decimal
    sample_failures: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class BatchVerdict:
    rows: list[RowVerdict]
    results: list[RuleResult]

    @property
    def pending(self) -> list[PendingReference]:
        """Every pending check of the batch, to hand to ``store.save_pending``."""
        return [check for row in self.rows for check in row.pending]


@dataclass(frozen=True, slots=True)
class PendingOutcome:
    resolved: list[PendingReference]
    failed: list[PendingReference]
    still_pending: list[PendingReference]


@dataclass(frozen=True, slots=True)
class RowQuality:
    """The three quality columns of a silver row."""

    score: Decimal
    passed: tuple[str, ...]
    issues: tuple[str, ...]

    @property
    def has_error(self) -> bool:
        return any(issue.startswith("ERROR:") for issue in self.issues)


class _Outcome(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    PENDING = "pending"
    NOT_APPLICABLE = "not applicable"


def canonical_value(value: Any) -> str:
    """One text form per value, so ``42``, ``Decimal('42.00')`` and ``'42'`` compare equal
    across Python rows, database answers and the text column of pending checks."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        value = Decimal(str(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        normal = value.normalize()
        return "0" if normal.is_zero() else format(normal, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return str(value)


def score_of(passed: int, failed: int) -> Decimal:
    """``passed / (passed + failed)`` rounded half-up to two decimals; 1.00 if none applied."""
    applied = passed + failed
    if applied == 0:
        return ONE
    return (Decimal(passed) / Decimal(applied)).quantize(_CENT, rounding=ROUND_HALF_UP)


def success_rate(record_count: int, failed_count: int) -> Decimal:
    """Share of records that passed, four decimals (``numeric(5,4)``); 1.0000 if none."""
    if record_count == 0:
        return Decimal("1.0000")
    ok = Decimal(record_count - failed_count) / Decimal(record_count)
    return ok.quantize(_BASIS_POINT, rounding=ROUND_HALF_UP)


def active_rules(table: str, rules: Sequence[Rule]) -> list[Rule]:
    """The active rules of ``table``, in rule id order (labels come out in a stable order)."""
    return sorted(
        (rule for rule in rules if rule.is_active and rule.table_name == table),
        key=lambda rule: rule.rule_id,
    )


def references_needed(
    table: str, rows: Sequence[Mapping[str, Any]], rules: Sequence[Rule]
) -> dict[tuple[str, str], set[Any]]:
    """Which ``(ref_table, ref_column)`` values ``evaluate_batch`` needs to know exist."""
    needed: dict[tuple[str, str], set[Any]] = {}
    for rule in active_rules(table, rules):
        if rule.rule_type is not RuleType.REFERENCE:
            continue
        values = {row.get(rule.column_name) for row in rows} - {None}
        if values:
            needed.setdefault(rule.reference, set()).update(values)
    return needed


def pending_lookups(pending: Sequence[PendingReference]) -> dict[tuple[str, str], set[Any]]:
    """Which values to look up to resolve ``pending`` (the sweep's ``references_needed``)."""
    needed: dict[tuple[str, str], set[Any]] = {}
    for check in pending:
        needed.setdefault(check.reference, set()).add(check.referenced_value)
    return needed


def row_key_of(
    table: str, row: Mapping[str, Any], key_columns: Sequence[str] | None = None
) -> dict[str, Any]:
    """The key of a silver row, ``{"order_id": 7, "order_date": date(...)}``."""
    columns = key_columns or SILVER_KEY_COLUMNS.get(table)
    if not columns:
        raise UnknownTableError(
            f"quality rules apply to table {table!r} whose key columns are not known; "
            "pass key_columns or add it to quality.engine.SILVER_KEY_COLUMNS"
        )
    return {column: row.get(column) for column in columns}


def evaluate_batch(
    table: str,
    rows: Sequence[Mapping[str, Any]],
    rules: Sequence[Rule],
    found: Found,
    *,
    event_times: Sequence[datetime],
    now: datetime,
    grace: timedelta,
    key_columns: Sequence[str] | None = None,
    max_samples: int = MAX_SAMPLES,
) -> BatchVerdict:
    """Score every row of one batch of ``silver.<table>`` and tally every rule.

    ``rows`` are the rows as they will be written (column -> value); ``event_times[i]`` is
    when row ``i``'s change happened at the source (it starts the reference grace period);
    ``found`` answers ``references_needed``. Verdicts come back in input order.
    """
    _require_aware(now, "now")
    if len(event_times) != len(rows):
        raise ValueError(f"{len(rows)} rows of {table} but {len(event_times)} event times")
    applicable = active_rules(table, rules)
    canonical_found = _canonical_found(found)
    tallies = {rule.rule_id: _Tally() for rule in applicable}
    verdicts: list[RowVerdict] = []
    for row, event_time in zip(rows, event_times, strict=True):
        _require_aware(event_time, f"event time of a {table} row")
        key = row_key_of(table, row, key_columns) if applicable else {}
        deadline = event_time + grace
        verdicts.append(
            _row_verdict(
                _RowContext(table, row, key, deadline, now),
                applicable,
                canonical_found,
                tallies,
                max_samples,
            )
        )
    results = [tallies[rule.rule_id].result(rule.rule_id) for rule in applicable] if rows else []
    return BatchVerdict(rows=verdicts, results=results)


@dataclass(frozen=True, slots=True)
class _RowContext:
    table: str
    row: Mapping[str, Any]
    key: dict[str, Any]
    deadline: datetime  # the end of the row's reference grace period
    now: datetime


def _row_verdict(
    context: _RowContext,
    applicable: Sequence[Rule],
    found: Found,
    tallies: dict[int, _Tally],
    max_samples: int,
) -> RowVerdict:
    """One row's verdict under every applicable rule; each rule's tally counts it."""
    row, key = context.row, context.key
    passed: list[str] = []
    issues: list[str] = []
    pending: list[PendingReference] = []
    for rule in applicable:
        value = row.get(rule.column_name)
        outcome, reason = _check(rule, value, found, context.deadline, context.now)
        tally = tallies[rule.rule_id]
        if outcome is _Outcome.PASSED:
            passed.append(rule.check)
            tally.records += 1
        elif outcome is _Outcome.FAILED:
            issues.append(rule.issue)
            tally.fail(failure_sample(key, rule.column_name, value, reason), max_samples)
        elif outcome is _Outcome.PENDING:
            pending.append(
                PendingReference(
                    table_name=context.table,
                    row_key=MappingProxyType(key),
                    rule_id=rule.rule_id,
                    referenced_value=canonical_value(value),
                    first_seen=context.now,
                    deadline=context.deadline,
                    rule=rule,
                )
            )
    quality = RowQuality(score_of(len(passed), len(issues)), tuple(passed), tuple(issues))
    return RowVerdict(
        score=quality.score,
        passed=quality.passed,
        issues=quality.issues,
        has_error=quality.has_error,
        pending=tuple(pending),
    )


def resolve_pending(
    pending: Sequence[PendingReference], found: Found, now: datetime
) -> PendingOutcome:
    """Split pending checks: target found (resolved), deadline reached (failed), or neither."""
    _require_aware(now, "now")
    canonical_found = _canonical_found(found)
    resolved: list[PendingReference] = []
    failed: list[PendingReference] = []
    still: list[PendingReference] = []
    for check in pending:
        if check.referenced_value in canonical_found.get(check.reference, set()):
            resolved.append(check)
        elif now >= check.deadline:
            failed.append(check)
        else:
            still.append(check)
    return PendingOutcome(resolved=resolved, failed=failed, still_pending=still)


def settle_row(
    passed: Sequence[str], issues: Sequence[str], settled: Sequence[tuple[Rule, bool]]
) -> RowQuality:
    """A row's quality after pending checks settle: append each to passed or issues
    (once: a label already present means the row was re-evaluated meanwhile) and
    recompute the score from the two lists."""
    new_passed = list(passed)
    new_issues = list(issues)
    for rule, ok in settled:
        if rule.check in new_passed or rule.issue in new_issues:
            continue
        (new_passed if ok else new_issues).append(rule.check if ok else rule.issue)
    return RowQuality(
        score_of(len(new_passed), len(new_issues)), tuple(new_passed), tuple(new_issues)
    )


def sweep_results(outcome: PendingOutcome, *, max_samples: int = MAX_SAMPLES) -> list[RuleResult]:
    """One result per rule with checks settled by a sweep (pending ones are not counted)."""
    tallies: dict[int, _Tally] = {}
    for check in outcome.resolved:
        tallies.setdefault(check.rule_id, _Tally()).records += 1
    for check in outcome.failed:
        rule = check._rule()
        ref_table, ref_column = rule.reference
        sample = failure_sample(
            check.row_key,
            rule.column_name,
            check.referenced_value,
            f"no {ref_table}.{ref_column} by the deadline {check.deadline.isoformat()}",
        )
        tallies.setdefault(check.rule_id, _Tally()).fail(sample, max_samples)
    return [tallies[rule_id].result(rule_id) for rule_id in sorted(tallies)]


@dataclass(slots=True)
class _Tally:
    records: int = 0
    failed: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, sample: dict[str, Any], max_samples: int) -> None:
        self.records += 1
        self.failed += 1
        if len(self.samples) < max_samples:
            self.samples.append(sample)

    def result(self, rule_id: int) -> RuleResult:
        return RuleResult(
            rule_id=rule_id,
            record_count=self.records,
            failed_count=self.failed,
            success_rate=success_rate(self.records, self.failed),
            sample_failures=list(self.samples),
        )


def _check(
    rule: Rule,
    value: Any,
    found: Mapping[tuple[str, str], set[str]],
    deadline: datetime,
    now: datetime,
) -> tuple[_Outcome, str]:
    if rule.rule_type is RuleType.NOT_NULL:
        return (_Outcome.FAILED, "is null") if value is None else (_Outcome.PASSED, "")
    if value is None:
        return _Outcome.NOT_APPLICABLE, ""
    if rule.rule_type is RuleType.RANGE:
        return _check_range(rule, value)
    if rule.rule_type is RuleType.PATTERN:
        if rule.pattern.search(value if isinstance(value, str) else canonical_value(value)):
            return _Outcome.PASSED, ""
        return _Outcome.FAILED, "does not match the pattern"
    ref_table, ref_column = rule.reference
    if canonical_value(value) in found.get(rule.reference, set()):
        return _Outcome.PASSED, ""
    if deadline > now:
        return _Outcome.PENDING, ""
    return _Outcome.FAILED, f"no {ref_table}.{ref_column} by the deadline {deadline.isoformat()}"


def _check_range(rule: Rule, value: Any) -> tuple[_Outcome, str]:
    number = _as_decimal(value)
    if number is None:
        return _Outcome.FAILED, "is not a number"
    low, high = rule.bounds
    if low is not None and number < low:
        return _Outcome.FAILED, f"below min {low}"
    if high is not None and number > high:
        return _Outcome.FAILED, f"above max {high}"
    return _Outcome.PASSED, ""


def _as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int | float | str):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def _canonical_found(found: Found) -> dict[tuple[str, str], set[str]]:
    return {ref: {canonical_value(v) for v in values} for ref, values in found.items()}


def _require_aware(moment: datetime, what: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise NaiveDatetimeError(f"{what} {moment.isoformat()} has no timezone; use UTC")
