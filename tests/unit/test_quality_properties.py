"""Properties of the engine over random rules, rows and times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from quality.engine import evaluate_batch, resolve_pending
from quality.rules import Rule, RuleType
from tests.unit.quality_rules_factory import rule

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=10)
COLUMNS = ("a", "b", "c")
REF = ("customers", "customer_id")

values = st.one_of(
    st.none(),
    st.integers(-50, 50),
    st.decimals(-100, 100, places=2),
    st.sampled_from(["x", "x1", "12", "ab@cd.ef", ""]),
)
configs = {
    "NOT_NULL": st.just({}),
    "RANGE": st.fixed_dictionaries({}, optional={"min": st.integers(-20, 0)})
    .map(lambda c: c or {"max": 10})
    .map(lambda c: {**c, "max": 30} if "min" in c else c),
    "PATTERN": st.sampled_from([{"regex": "^x"}, {"regex": "[0-9]"}, {"regex": "^$"}]),
    "REFERENCE": st.just({"table": REF[0], "column": REF[1]}),
}


@st.composite
def rule_sets(draw: st.DrawFn) -> list[Rule]:
    chosen: list[Rule] = []
    for rule_id, column in enumerate(COLUMNS, start=1):
        for kind in draw(st.sets(st.sampled_from(sorted(configs)), max_size=4)):
            chosen.append(
                rule(
                    rule_id * 10 + sorted(configs).index(kind),
                    "orders",
                    column,
                    kind,
                    draw(configs[kind]),
                    draw(st.sampled_from(["ERROR", "WARNING", "INFO"])),
                    active=draw(st.booleans()),
                )
            )
    return chosen


rows_strategy = st.lists(
    st.fixed_dictionaries(dict.fromkeys(COLUMNS, values)), min_size=1, max_size=6
)


@settings(max_examples=300, deadline=None)
@given(
    rules=rule_sets(),
    rows=rows_strategy,
    found=st.sets(st.integers(-50, 50), max_size=20),
    ages=st.lists(st.integers(0, 1200), min_size=6, max_size=6),
)
def test_scores_are_two_decimal_shares_and_outcomes_partition_the_applicable_rules(
    rules: list[Rule], rows: list[dict[str, Any]], found: set[int], ages: list[int]
) -> None:
    keyed = [{"order_id": i, "order_date": None, **row} for i, row in enumerate(rows)]
    event_times = [NOW - timedelta(seconds=age) for age in ages[: len(rows)]]
    verdict = evaluate_batch(
        "orders", keyed, rules, {REF: found}, event_times=event_times, now=NOW, grace=GRACE
    )
    assert len(verdict.rows) == len(rows)
    for row, row_verdict in zip(keyed, verdict.rows, strict=True):
        # The oracle: a rule applies unless it is inactive, or it is not NOT_NULL and sees NULL.
        applicable = sorted(
            r.check
            for r in rules
            if r.is_active and (r.rule_type is RuleType.NOT_NULL or row[r.column_name] is not None)
        )
        issues = [issue.split(":", 1)[1] for issue in row_verdict.issues]
        pending = [f"REFERENCE:{p.rule.column_name}" for p in row_verdict.pending if p.rule]
        assert sorted([*row_verdict.passed, *issues, *pending]) == applicable
        assert Decimal(0) <= row_verdict.score <= Decimal(1)
        assert row_verdict.score.as_tuple().exponent == -2
        assert row_verdict.has_error == any(i.startswith("ERROR:") for i in row_verdict.issues)
    for result in verdict.results:
        assert 0 <= result.failed_count <= result.record_count
        assert Decimal(0) <= result.success_rate <= Decimal(1)
        assert result.success_rate.as_tuple().exponent == -4
        assert len(result.sample_failures) == min(5, result.failed_count)


@settings(max_examples=200, deadline=None)
@given(
    rows=rows_strategy,
    later_found=st.sets(st.integers(-50, 50), max_size=20),
    wait=st.integers(0, 1200),
)
def test_every_pending_check_ends_in_exactly_one_outcome(
    rows: list[dict[str, Any]], later_found: set[int], wait: int
) -> None:
    reference = rule(1, "orders", "a", "REFERENCE", {"table": REF[0], "column": REF[1]})
    keyed = [{"order_id": i, "order_date": None, **row} for i, row in enumerate(rows)]
    verdict = evaluate_batch(
        "orders", keyed, [reference], {}, event_times=[NOW] * len(rows), now=NOW, grace=GRACE
    )
    checks = verdict.pending
    later = NOW + timedelta(seconds=wait)
    outcome = resolve_pending(checks, {REF: later_found}, later)
    assert len(outcome.resolved) + len(outcome.failed) + len(outcome.still_pending) == len(checks)
    assert all(later >= check.deadline for check in outcome.failed)
    assert all(later < check.deadline for check in outcome.still_pending)
