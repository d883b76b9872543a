"""Rule rows parse into validated rules; malformed ones are errors that name what to fix."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

import pytest

from config.errors import PermanentError
from quality.rules import InvalidRuleError, RuleType, Severity, parse_rule, parse_rules


def row(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "rule_id": 7,
        "table_name": "orders",
        "column_name": "total_amount",
        "rule_type": "RANGE",
        "rule_config": json.dumps({"min": 0, "max": 100000}),
        "severity": "ERROR",
        "is_active": True,
    }
    return {**base, **overrides}


def test_a_range_row_from_the_database_becomes_a_rule_with_decimal_bounds() -> None:
    parsed = parse_rule(row())
    assert parsed.rule_type is RuleType.RANGE
    assert parsed.severity is Severity.ERROR
    assert parsed.bounds == (Decimal(0), Decimal(100000))
    assert parsed.check == "RANGE:total_amount"
    assert parsed.issue == "ERROR:RANGE:total_amount"


def test_float_bounds_become_the_decimal_they_were_written_as() -> None:
    parsed = parse_rule(row(rule_config={"min": 0.1}))
    assert parsed.bounds == (Decimal("0.1"), None)


def test_rule_config_is_read_only() -> None:
    parsed = parse_rule(row())
    with pytest.raises(TypeError):
        parsed.config["min"] = 5  # type: ignore[index]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rule_type": "UNIQUE"}, "unknown rule type 'UNIQUE'"),
        ({"severity": "FATAL"}, "unknown severity 'FATAL'"),
        ({"rule_config": "{not json"}, "rule_config is not valid JSON"),
        ({"rule_config": "[1, 2]"}, "rule_config must be a JSON object"),
        ({"rule_config": {}}, 'needs "min", "max" or both'),
        ({"rule_config": {"min": "ten"}}, "min must be a number"),
        ({"rule_config": {"min": True}}, "min must be a number"),
        ({"rule_config": {"min": 5, "max": 1}}, "min 5 is above max 1"),
        ({"rule_config": {"mn": 0}}, "unknown config keys ['mn']"),
        ({"rule_config": {"min": "NaN"}}, "min must be finite"),
        ({"rule_type": "PATTERN", "rule_config": {"regex": "(unclosed"}}, "does not compile"),
        ({"rule_type": "PATTERN", "rule_config": {}}, 'needs a non-empty "regex"'),
        ({"rule_type": "REFERENCE", "rule_config": {"table": "customers"}}, 'needs "table"'),
        (
            {"rule_type": "REFERENCE", "rule_config": {"table": "x; DROP", "column": "id"}},
            "is not a plain lower-case SQL identifier",
        ),
        ({"rule_type": "NOT_NULL", "rule_config": {"min": 1}}, "unknown config keys"),
        ({"table_name": 'orders"'}, "table 'orders\"' is not a plain"),
        ({"column_name": "Total Amount"}, "column 'Total Amount' is not a plain"),
    ],
)
def test_malformed_rules_raise_a_permanent_error_naming_the_rule(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRuleError) as caught:
        parse_rule(row(**overrides))
    assert isinstance(caught.value, PermanentError)
    assert message in str(caught.value)
    assert "quality rule 7 on" in str(caught.value)


def test_a_row_without_a_field_is_an_invalid_rule() -> None:
    incomplete = row()
    del incomplete["severity"]
    with pytest.raises(InvalidRuleError, match="lacks the field 'severity'"):
        parse_rule(incomplete)


def test_malformed_rules_are_logged_and_skipped_while_good_ones_load(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows = [
        row(rule_id=1),
        row(rule_id=2, rule_type="PATTERN", rule_config={"regex": "[a-"}),
        row(rule_id=3, column_name="customer_id", rule_type="NOT_NULL", rule_config="{}"),
    ]
    with caplog.at_level(logging.WARNING, logger="bitvelocity.quality.rules"):
        rules = parse_rules(rows)
    assert [r.rule_id for r in rules] == [1, 3]
    assert "quality rule 2 on orders.total_amount" in caplog.text


def test_skipped_rules_can_be_collected_instead_of_logged() -> None:
    errors: list[InvalidRuleError] = []
    rules = parse_rules([row(severity="LOUD")], on_invalid=errors.append)
    assert rules == []
    assert len(errors) == 1
