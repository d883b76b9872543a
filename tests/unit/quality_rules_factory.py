"""Rules for the quality unit tests, built through the same parser the store uses."""

from __future__ import annotations

from typing import Any

from quality.rules import Rule, build_rule


def rule(
    rule_id: int,
    table: str,
    column: str,
    rule_type: str,
    config: dict[str, Any] | None = None,
    severity: str = "ERROR",
    *,
    active: bool = True,
) -> Rule:
    return build_rule(
        rule_id=rule_id,
        table_name=table,
        column_name=column,
        rule_type=rule_type,
        config=config or {},
        severity=severity,
        is_active=active,
    )
