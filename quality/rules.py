"""Quality rules as data: the rule record and its parsing from ``ops.data_quality_rules`` rows.

A rule row is written by people (SQL or ``bitvelocity quality add-rule``), so it may be
malformed. Parsing raises ``InvalidRuleError`` (a ``PermanentError``) naming the rule and the
problem; ``parse_rules`` logs and skips such rows so one bad rule never stops a worker. Table,
column and reference names must look like plain SQL identifiers here; the store then checks
them against the silver catalog before any of them reaches a statement.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from config.errors import PermanentError

log = logging.getLogger("bitvelocity.quality.rules")

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class InvalidRuleError(PermanentError):
    """A quality rule is malformed: unknown type or severity, bad config, bad identifier."""


class RuleType(StrEnum):
    NOT_NULL = "NOT_NULL"
    RANGE = "RANGE"
    PATTERN = "PATTERN"
    REFERENCE = "REFERENCE"


class Severity(StrEnum):
    ERROR = "ERROR"
    WARNING = "WARNING"
    INFO = "INFO"


@dataclass(frozen=True, slots=True)
class Rule:
    """One active or inactive rule on ``silver.<table_name>.<column_name>``.

    ``config`` is read-only and already validated for ``rule_type``: RANGE has Decimal-able
    ``min``/``max`` (at least one), PATTERN a compilable ``regex``, REFERENCE ``table`` and
    ``column`` identifiers.
    """

    rule_id: int
    table_name: str
    column_name: str
    rule_type: RuleType
    config: Mapping[str, Any]
    severity: Severity
    is_active: bool

    @property
    def description(self) -> str:
        return describe_rule(self.rule_id, self.table_name, self.column_name)

    @property
    def check(self) -> str:
        """The label in ``quality_checks_passed``: ``NOT_NULL:quantity``."""
        return f"{self.rule_type}:{self.column_name}"

    @property
    def issue(self) -> str:
        """The label in ``quality_issues``, severity first: ``ERROR:RANGE:total_amount``."""
        return f"{self.severity}:{self.rule_type}:{self.column_name}"

    @property
    def reference(self) -> tuple[str, str]:
        """``(table, column)`` a REFERENCE rule points at in silver."""
        return (str(self.config["table"]), str(self.config["column"]))

    @property
    def bounds(self) -> tuple[Decimal | None, Decimal | None]:
        """``(min, max)`` of a RANGE rule as Decimals; either may be None (unbounded)."""
        return (_decimal_or_none(self.config.get("min")), _decimal_or_none(self.config.get("max")))

    @property
    def pattern(self) -> re.Pattern[str]:
        """The compiled regex of a PATTERN rule (compiled once per distinct regex)."""
        return compiled_pattern(str(self.config["regex"]))


def describe_rule(rule_id: int, table_name: str, column_name: str) -> str:
    """How messages name a rule; id 0 is one not inserted yet (``quality add-rule``)."""
    name = f"quality rule {rule_id}" if rule_id else "new quality rule"
    return f"{name} on {table_name}.{column_name}"


@functools.lru_cache(maxsize=256)
def compiled_pattern(regex: str) -> re.Pattern[str]:
    return re.compile(regex)


def _decimal_or_none(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def build_rule(
    *,
    rule_id: int,
    table_name: str,
    column_name: str,
    rule_type: str,
    config: Mapping[str, Any] | str | None,
    severity: str,
    is_active: bool = True,
) -> Rule:
    """A validated ``Rule``; raises ``InvalidRuleError`` saying what to fix."""
    where = describe_rule(rule_id, table_name, column_name)
    _require_identifier(table_name, "table", where)
    _require_identifier(column_name, "column", where)
    try:
        kind = RuleType(str(rule_type).upper())
    except ValueError:
        raise InvalidRuleError(
            f"{where}: unknown rule type {rule_type!r}; use one of {', '.join(RuleType)}"
        ) from None
    try:
        level = Severity(str(severity).upper())
    except ValueError:
        raise InvalidRuleError(
            f"{where}: unknown severity {severity!r}; use one of {', '.join(Severity)}"
        ) from None
    parsed = _config_mapping(config, where)
    _CHECKERS[kind](parsed, f"{where} ({kind})")
    return Rule(
        rule_id=int(rule_id),
        table_name=table_name,
        column_name=column_name,
        rule_type=kind,
        config=MappingProxyType(dict(parsed)),
        severity=level,
        is_active=bool(is_active),
    )


def parse_rule(row: Mapping[str, Any]) -> Rule:
    """A ``Rule`` from an ``ops.data_quality_rules`` row (``rule_config`` as JSON text or dict)."""
    try:
        return build_rule(
            rule_id=row["rule_id"],
            table_name=row["table_name"],
            column_name=row["column_name"],
            rule_type=row["rule_type"],
            config=row["rule_config"],
            severity=row["severity"],
            is_active=row.get("is_active", True),
        )
    except KeyError as exc:
        raise InvalidRuleError(f"quality rule row lacks the field {exc.args[0]!r}") from None


def parse_rules(
    rows: Iterable[Mapping[str, Any]],
    on_invalid: Callable[[InvalidRuleError], None] | None = None,
) -> list[Rule]:
    """Every well-formed rule of ``rows``; malformed ones are logged (or passed to
    ``on_invalid``) and skipped, so a typo in one rule cannot stop the pipeline."""
    rules: list[Rule] = []
    for row in rows:
        try:
            rules.append(parse_rule(row))
        except InvalidRuleError as exc:
            if on_invalid is None:
                log.warning("skipping malformed rule: %s", exc)
            else:
                on_invalid(exc)
    return rules


def _require_identifier(name: Any, what: str, where: str) -> None:
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise InvalidRuleError(f"{where}: {what} {name!r} is not a plain lower-case SQL identifier")


def _config_mapping(config: Mapping[str, Any] | str | None, where: str) -> Mapping[str, Any]:
    if config is None:
        return {}
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as exc:
            raise InvalidRuleError(f"{where}: rule_config is not valid JSON ({exc})") from None
    if not isinstance(config, Mapping):
        raise InvalidRuleError(
            f"{where}: rule_config must be a JSON object, got {type(config).__name__}"
        )
    return config


def _only_keys(config: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(config) - allowed)
    if unknown:
        expected = ", ".join(sorted(allowed)) or "no keys"
        raise InvalidRuleError(f"{where}: unknown config keys {unknown}; expected {expected}")


def _check_not_null(config: Mapping[str, Any], where: str) -> None:
    _only_keys(config, set(), where)


def _check_range(config: Mapping[str, Any], where: str) -> None:
    _only_keys(config, {"min", "max"}, where)
    bounds: dict[str, Decimal] = {}
    for key in ("min", "max"):
        value = config.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
            raise InvalidRuleError(f"{where}: {key} must be a number, got {value!r}")
        try:
            bound = Decimal(str(value))
        except InvalidOperation:
            raise InvalidRuleError(f"{where}: {key} must be a number, got {value!r}") from None
        if not bound.is_finite():
            raise InvalidRuleError(f"{where}: {key} must be finite, got {value!r}")
        bounds[key] = bound
    if not bounds:
        raise InvalidRuleError(f'{where}: needs "min", "max" or both, e.g. {{"min": 0}}')
    if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
        raise InvalidRuleError(f"{where}: min {bounds['min']} is above max {bounds['max']}")


def _check_pattern(config: Mapping[str, Any], where: str) -> None:
    _only_keys(config, {"regex"}, where)
    regex = config.get("regex")
    if not isinstance(regex, str) or not regex:
        raise InvalidRuleError(f'{where}: needs a non-empty "regex" string')
    try:
        compiled_pattern(regex)
    except re.error as exc:
        raise InvalidRuleError(f"{where}: regex {regex!r} does not compile ({exc})") from None


def _check_reference(config: Mapping[str, Any], where: str) -> None:
    _only_keys(config, {"table", "column"}, where)
    for key in ("table", "column"):
        if key not in config:
            raise InvalidRuleError(
                f'{where}: needs "table" and "column", e.g. '
                '{"table": "customers", "column": "customer_id"}'
            )
        _require_identifier(config[key], f"referenced {key}", where)


_CHECKERS: dict[RuleType, Callable[[Mapping[str, Any], str], None]] = {
    RuleType.NOT_NULL: _check_not_null,
    RuleType.RANGE: _check_range,
    RuleType.PATTERN: _check_pattern,
    RuleType.REFERENCE: _check_reference,
}
