"""A worker's table specs follow silver's columns; policies resolve per table."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.settings import Settings
from sinks.postgres.schema_changes import adopt_columns, policy_for, silver_data_columns
from sinks.postgres.schema_drift import Policy, silver_column_type
from sinks.postgres.tables import TABLES

ORDERS = TABLES["orders"]


def info(name: str, data_type: str = "text") -> dict[str, object]:
    return {
        "column_name": name,
        "data_type": data_type,
        "numeric_precision": None,
        "numeric_scale": None,
        "character_maximum_length": None,
    }


def test_bookkeeping_columns_are_not_data_columns() -> None:
    rows = [info("order_id", "bigint"), info("source_lsn", "bigint"), info("processed_at")]
    assert list(silver_data_columns(rows)) == ["order_id"]


def test_a_column_silver_has_and_the_source_sends_is_adopted_after_the_spec_ones() -> None:
    silver = {c: silver_column_type("text") for c in (*ORDERS.columns, "gift_note")}
    source = {ORDERS.source_name(c): silver_column_type("text") for c in ORDERS.columns}
    grown = adopt_columns(ORDERS, silver, {**source, "gift_note": silver_column_type("text")})
    assert grown.columns == (*ORDERS.columns, "gift_note")
    assert grown.silver_row({"gift_note": "x", "created_date": 1})["order_date"] == 1


def test_a_column_silver_has_but_the_source_no_longer_sends_is_not_adopted() -> None:
    silver = {c: silver_column_type("text") for c in (*ORDERS.columns, "gift_note")}
    assert adopt_columns(ORDERS, silver, {}) is ORDERS


def test_a_table_policy_overrides_the_default() -> None:
    assert policy_for({"payments": "pause"}, "evolve", "payments") is Policy.PAUSE
    assert policy_for({"payments": "pause"}, "evolve", "orders") is Policy.EVOLVE


def test_policies_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BV_SINK__SCHEMA_POLICY", "ignore")
    monkeypatch.setenv("BV_SINK__SCHEMA_POLICIES", '{"payments": "pause"}')
    sink = Settings().sink
    assert (sink.schema_policy, sink.schema_policies) == ("ignore", {"payments": "pause"})


def test_an_unknown_policy_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BV_SINK__SCHEMA_POLICY", "yolo")
    with pytest.raises(ValidationError):
        Settings()
