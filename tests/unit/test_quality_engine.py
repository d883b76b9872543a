"""The quality engine scores silver rows by hand-checked examples, one rule type at a time."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from quality.engine import (
    NaiveDatetimeError,
    PendingReference,
    UnknownTableError,
    canonical_value,
    evaluate_batch,
    pending_lookups,
    references_needed,
    resolve_pending,
    score_of,
    settle_row,
    sweep_results,
)
from quality.rules import Rule
from tests.unit.quality_rules_factory import rule

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=10)
EMAIL_REGEX = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"

RANGE_TOTAL = rule(2, "orders", "total_amount", "RANGE", {"min": 0, "max": 100000})
REF_CUSTOMER = rule(
    3, "orders", "customer_id", "REFERENCE", {"table": "customers", "column": "customer_id"}
)
NOT_NULL_QTY = rule(4, "order_items", "quantity", "NOT_NULL", severity="WARNING")
EMAIL = rule(1, "customers", "email", "PATTERN", {"regex": EMAIL_REGEX})


def evaluate(
    table: str,
    rows: list[dict[str, Any]],
    rules: list[Rule],
    found: dict[tuple[str, str], set[Any]] | None = None,
    *,
    event_time: datetime = NOW,
    now: datetime = NOW,
) -> Any:
    return evaluate_batch(
        table, rows, rules, found or {}, event_times=[event_time] * len(rows), now=now, grace=GRACE
    )


def order(order_id: int = 1, **values: Any) -> dict[str, Any]:
    return {"order_id": order_id, "order_date": date(2024, 5, 1), **values}


# NOT_NULL -------------------------------------------------------------------------------


def test_not_null_fails_a_null_with_its_severity_first_and_passes_a_zero() -> None:
    verdict = evaluate(
        "order_items",
        [{"order_item_id": 1, "quantity": None}, {"order_item_id": 2, "quantity": 0}],
        [NOT_NULL_QTY],
    )
    missing, zero = verdict.rows
    assert missing.issues == ("WARNING:NOT_NULL:quantity",)
    assert missing.passed == ()
    assert missing.score == Decimal("0.00")
    assert missing.has_error is False  # a WARNING is not an ERROR
    assert zero.passed == ("NOT_NULL:quantity",)
    assert zero.issues == ()
    assert zero.score == Decimal("1.00")


def test_a_column_absent_from_the_row_counts_as_null_for_not_null() -> None:
    [verdict] = evaluate("order_items", [{"order_item_id": 1}], [NOT_NULL_QTY]).rows
    assert verdict.issues == ("WARNING:NOT_NULL:quantity",)


# RANGE ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "ok"),
    [
        (Decimal("0.00"), True),
        (Decimal("100000.00"), True),
        (Decimal("100000.01"), False),
        (Decimal("-0.01"), False),
        (250, True),
        (100000.5, False),
        ("99.90", True),
    ],
)
def test_range_bounds_are_inclusive_and_compared_as_decimals(amount: Any, ok: bool) -> None:
    [verdict] = evaluate("orders", [order(total_amount=amount)], [RANGE_TOTAL]).rows
    if ok:
        assert (verdict.passed, verdict.issues) == (("RANGE:total_amount",), ())
    else:
        assert (verdict.passed, verdict.issues) == ((), ("ERROR:RANGE:total_amount",))
        assert verdict.has_error is True


def test_range_with_only_a_minimum_has_no_upper_bound() -> None:
    minimum_only = rule(9, "orders", "total_amount", "RANGE", {"min": "0.50"}, "INFO")
    verdict = evaluate(
        "orders",
        [order(1, total_amount=10**9), order(2, total_amount=Decimal("0.49"))],
        [minimum_only],
    )
    assert verdict.rows[0].passed == ("RANGE:total_amount",)
    assert verdict.rows[1].issues == ("INFO:RANGE:total_amount",)
    assert verdict.rows[1].has_error is False


def test_range_fails_a_value_that_is_not_a_number() -> None:
    [verdict] = evaluate("orders", [order(total_amount="lots")], [RANGE_TOTAL]).rows
    assert verdict.issues == ("ERROR:RANGE:total_amount",)


def test_null_is_not_checked_by_range_pattern_or_reference() -> None:
    rules = [RANGE_TOTAL, REF_CUSTOMER, rule(5, "orders", "status", "PATTERN", {"regex": "^X$"})]
    [verdict] = evaluate("orders", [order(total_amount=None, customer_id=None)], rules).rows
    assert verdict == verdict.__class__(Decimal("1.00"), (), (), False, ())


# PATTERN --------------------------------------------------------------------------------


def test_pattern_passes_a_valid_email_and_fails_an_invalid_one() -> None:
    verdict = evaluate(
        "customers",
        [{"customer_id": 1, "email": "ann@shop.example"}, {"customer_id": 2, "email": "ann@shop"}],
        [EMAIL],
    )
    assert verdict.rows[0].passed == ("PATTERN:email",)
    assert verdict.rows[1].issues == ("ERROR:PATTERN:email",)


def test_pattern_uses_search_so_an_unanchored_regex_matches_inside_the_value() -> None:
    digits = rule(6, "products", "sku", "PATTERN", {"regex": "[0-9]+"}, "WARNING")
    anchored = rule(7, "products", "name", "PATTERN", {"regex": "^[0-9]+$"}, "WARNING")
    [verdict] = evaluate(
        "products", [{"product_id": 1, "sku": "AB-12", "name": "AB-12"}], [digits, anchored]
    ).rows
    assert verdict.passed == ("PATTERN:sku",)
    assert verdict.issues == ("WARNING:PATTERN:name",)


# Scores ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("passed", "failed", "score"),
    [
        (2, 1, "0.67"),
        (1, 2, "0.33"),
        (0, 0, "1.00"),
        (1, 0, "1.00"),
        (0, 3, "0.00"),
        (5, 3, "0.63"),
        (1, 7, "0.13"),
    ],
)
def test_score_is_passed_over_applied_rounded_half_up(passed: int, failed: int, score: str) -> None:
    assert score_of(passed, failed) == Decimal(score)
    assert score_of(passed, failed).as_tuple().exponent == -2


def test_two_of_three_checks_passing_scores_0_67() -> None:
    rules = [
        RANGE_TOTAL,
        REF_CUSTOMER,
        rule(8, "orders", "status", "PATTERN", {"regex": "^(PENDING|PAID)$"}, "WARNING"),
    ]
    found = {("customers", "customer_id"): {10}}
    [verdict] = evaluate(
        "orders", [order(total_amount=-5, customer_id=10, status="PAID")], rules, found
    ).rows
    assert verdict.score == Decimal("0.67")
    assert verdict.passed == ("REFERENCE:customer_id", "PATTERN:status")
    assert verdict.issues == ("ERROR:RANGE:total_amount",)


def test_a_table_without_rules_scores_1_00() -> None:
    [verdict] = evaluate("payments", [{"payment_id": 1, "amount": None}], [RANGE_TOTAL]).rows
    assert (verdict.score, verdict.passed, verdict.issues) == (Decimal("1.00"), (), ())


def test_inactive_rules_do_not_apply() -> None:
    off = rule(4, "order_items", "quantity", "NOT_NULL", active=False)
    [verdict] = evaluate("order_items", [{"order_item_id": 1, "quantity": None}], [off]).rows
    assert verdict.issues == ()


# REFERENCE ------------------------------------------------------------------------------


def test_references_needed_collects_non_null_values_of_active_reference_rules() -> None:
    rows = [order(1, customer_id=10), order(2, customer_id=11), order(3, customer_id=None)]
    inactive = rule(
        11, "orders", "currency", "REFERENCE", {"table": "ref", "column": "code"}, active=False
    )
    other = rule(12, "payments", "order_id", "REFERENCE", {"table": "orders", "column": "order_id"})
    assert references_needed("orders", rows, [RANGE_TOTAL, REF_CUSTOMER, inactive, other]) == {
        ("customers", "customer_id"): {10, 11}
    }
    assert references_needed("orders", [order(1, customer_id=None)], [REF_CUSTOMER]) == {}


def test_a_found_reference_passes_even_when_the_database_answers_with_another_type() -> None:
    found = {("customers", "customer_id"): {Decimal("10.00"), "11"}}
    verdict = evaluate(
        "orders", [order(1, customer_id=10), order(2, customer_id=11)], [REF_CUSTOMER], found
    )
    assert [v.passed for v in verdict.rows] == [("REFERENCE:customer_id",)] * 2


def test_a_missing_reference_inside_the_grace_period_is_pending_not_failed() -> None:
    event_time = NOW - GRACE + timedelta(microseconds=1)
    [verdict] = evaluate(
        "orders",
        [order(7, customer_id=99, total_amount=5)],
        [RANGE_TOTAL, REF_CUSTOMER],
        event_time=event_time,
    ).rows
    assert verdict.issues == ()
    assert verdict.passed == ("RANGE:total_amount",)
    assert verdict.score == Decimal("1.00")  # pending is not applied yet
    [pending] = verdict.pending
    assert pending.table_name == "orders"
    assert dict(pending.row_key) == {"order_id": 7, "order_date": date(2024, 5, 1)}
    assert pending.rule_id == 3
    assert pending.referenced_value == "99"
    assert pending.first_seen == NOW
    assert pending.deadline == event_time + GRACE


def test_a_missing_reference_exactly_at_the_deadline_has_failed() -> None:
    [verdict] = evaluate(
        "orders",
        [order(7, customer_id=99, total_amount=5)],
        [RANGE_TOTAL, REF_CUSTOMER],
        event_time=NOW - GRACE,
    ).rows
    assert verdict.pending == ()
    assert verdict.issues == ("ERROR:REFERENCE:customer_id",)
    assert verdict.score == Decimal("0.50")
    assert verdict.has_error is True


def test_pending_checks_are_not_counted_in_the_rule_results() -> None:
    verdict = evaluate(
        "orders",
        [order(1, customer_id=99), order(2, customer_id=10)],
        [REF_CUSTOMER],
        {("customers", "customer_id"): {10}},
    )
    [result] = verdict.results
    assert (result.record_count, result.failed_count) == (1, 0)
    assert result.success_rate == Decimal("1.0000")
    assert len(verdict.pending) == 1


# Results and samples -------------------------------------------------------------------


def test_one_result_per_rule_with_counts_rate_and_at_most_five_samples() -> None:
    rows = [order(i, total_amount=Decimal(-i)) for i in range(1, 8)] + [order(8, total_amount=1)]
    rows += [order(9, total_amount=None)]
    verdict = evaluate("orders", rows, [RANGE_TOTAL, REF_CUSTOMER])
    by_rule = {result.rule_id: result for result in verdict.results}
    assert set(by_rule) == {2, 3}
    total = by_rule[2]
    assert (total.record_count, total.failed_count) == (8, 7)  # the NULL is not checked
    assert total.success_rate == Decimal("0.1250")
    assert len(total.sample_failures) == 5
    assert total.sample_failures[0] == {
        "key": {"order_id": 1, "order_date": "2024-05-01"},
        "column": "total_amount",
        "value": "-1",
        "reason": "below min 0",
    }
    assert (by_rule[3].record_count, by_rule[3].failed_count) == (0, 0)
    json.dumps([r.sample_failures for r in verdict.results])  # JSON-safe as written


def test_success_rate_has_four_decimals() -> None:
    rows = [order(1, total_amount=1), order(2, total_amount=2), order(3, total_amount=-3)]
    [result, _] = evaluate("orders", rows, [RANGE_TOTAL, REF_CUSTOMER]).results
    assert result.success_rate == Decimal("0.6667")


def test_an_empty_batch_writes_no_results() -> None:
    assert evaluate("orders", [], [RANGE_TOTAL]).results == []


def test_samples_keep_the_key_and_mask_personal_data() -> None:
    customer = {
        "customer_id": 42,
        "email": "john.smith@example",
        "first_name": "John",
        "last_name": "Smith",
        "country": "GB",
    }
    last_name = rule(13, "customers", "last_name", "PATTERN", {"regex": "^[a-z]+$"}, "INFO")
    verdict = evaluate("customers", [customer], [EMAIL, last_name])
    samples = [sample for result in verdict.results for sample in result.sample_failures]
    assert samples == [
        {
            "key": {"customer_id": 42},
            "column": "email",
            "value": "j***@e***",
            "reason": "does not match the pattern",
        },
        {
            "key": {"customer_id": 42},
            "column": "last_name",
            "value": "S***",
            "reason": "does not match the pattern",
        },
    ]
    text = json.dumps(samples).lower()
    for raw in ("john", "smith", "example", "gb"):
        assert raw not in text


def test_an_email_in_a_column_not_known_as_personal_is_still_masked() -> None:
    rule_on_note = rule(14, "payments", "method", "PATTERN", {"regex": "^(CARD|PAYPAL)$"})
    verdict = evaluate(
        "payments", [{"payment_id": 3, "method": "jane@example.com"}], [rule_on_note]
    )
    assert verdict.results[0].sample_failures[0]["value"] == "j***@e***.com"


# Guards ---------------------------------------------------------------------------------


def test_naive_times_are_refused() -> None:
    with pytest.raises(NaiveDatetimeError):
        evaluate("orders", [order()], [RANGE_TOTAL], now=datetime(2024, 5, 1))  # noqa: DTZ001


def test_rules_on_a_table_with_unknown_keys_need_key_columns() -> None:
    audit = rule(15, "audit", "who", "NOT_NULL")
    with pytest.raises(UnknownTableError, match="'audit'"):
        evaluate("audit", [{"who": None}], [audit])
    verdict = evaluate_batch(
        "audit",
        [{"audit_id": 5, "who": None}],
        [audit],
        {},
        event_times=[NOW],
        now=NOW,
        grace=GRACE,
        key_columns=("audit_id",),
    )
    assert verdict.results[0].sample_failures[0]["key"] == {"audit_id": 5}


# Pending references ---------------------------------------------------------------------


def pending(order_id: int, customer_id: int, deadline: datetime) -> PendingReference:
    return PendingReference(
        table_name="orders",
        row_key={"order_id": order_id, "order_date": "2024-05-01"},
        rule_id=3,
        referenced_value=canonical_value(customer_id),
        first_seen=NOW - GRACE,
        deadline=deadline,
        rule=REF_CUSTOMER,
    )


def test_resolve_pending_splits_resolved_expired_and_still_pending() -> None:
    arrived = pending(1, 10, NOW + timedelta(seconds=1))
    arrived_late = pending(2, 11, NOW - timedelta(seconds=1))  # found wins over expiry
    at_deadline = pending(3, 12, NOW)
    before_deadline = pending(4, 13, NOW + timedelta(microseconds=1))
    checks = [arrived, arrived_late, at_deadline, before_deadline]
    assert pending_lookups(checks) == {("customers", "customer_id"): {"10", "11", "12", "13"}}
    outcome = resolve_pending(checks, {("customers", "customer_id"): {10, 11}}, NOW)
    assert outcome.resolved == [arrived, arrived_late]
    assert outcome.failed == [at_deadline]
    assert outcome.still_pending == [before_deadline]


def test_a_pending_check_without_its_rule_cannot_be_resolved() -> None:
    bare = PendingReference("orders", {"order_id": 1}, 3, "10", NOW, NOW)
    with pytest.raises(ValueError, match="carries no rule"):
        resolve_pending([bare], {}, NOW)


def test_settling_appends_once_and_recomputes_the_score() -> None:
    passed, issues = ("RANGE:total_amount",), ()
    assert settle_row(passed, issues, [(REF_CUSTOMER, True)]) == settle_row(
        ("RANGE:total_amount", "REFERENCE:customer_id"), (), []
    )
    failed = settle_row(passed, issues, [(REF_CUSTOMER, False)])
    assert failed.passed == ("RANGE:total_amount",)
    assert failed.issues == ("ERROR:REFERENCE:customer_id",)
    assert failed.score == Decimal("0.50")
    assert failed.has_error is True
    again = settle_row(failed.passed, failed.issues, [(REF_CUSTOMER, True)])
    assert again == failed  # the row already carries this check: settled once


def test_sweep_results_count_settled_checks_with_redacted_samples() -> None:
    outcome = resolve_pending(
        [pending(1, 10, NOW), pending(2, 20, NOW), pending(3, 30, NOW + GRACE)],
        {("customers", "customer_id"): {10}},
        NOW,
    )
    [result] = sweep_results(outcome)
    assert (result.rule_id, result.record_count, result.failed_count) == (3, 2, 1)
    assert result.success_rate == Decimal("0.5000")
    assert result.sample_failures == [
        {
            "key": {"order_id": 2, "order_date": "2024-05-01"},
            "column": "customer_id",
            "value": "20",
            "reason": f"no customers.customer_id by the deadline {NOW.isoformat()}",
        }
    ]
