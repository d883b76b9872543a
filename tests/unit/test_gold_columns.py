"""``BV_SINK__GOLD_COLUMNS``: which silver columns go to gold, and the statements that fill
them (decision 0021). The DDL and the filling run for real in
tests/integration/test_source_ddl.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.errors import ConfigurationError
from config.settings import Settings, SinkSettings
from sinks.postgres.gold_columns import mapped_columns
from sinks.postgres.medallion import GoldStatements


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BV_SINK__GOLD_COLUMNS", '{"orders.gift_note": "order_facts.note"}')
    assert Settings().sink.gold_columns == {"orders.gift_note": "order_facts.note"}
    monkeypatch.delenv("BV_SINK__GOLD_COLUMNS")
    assert Settings().sink.gold_columns == {}  # by default gold keeps its shape


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"orders.gift_note": "daily_sales.gift_note"}, "feed only orders -> order_facts"),
        ({"payments.note": "order_facts.note"}, "feed only orders -> order_facts"),
        ({"orders.Gift": "order_facts.gift"}, "pattern"),
        ({"orders.a; drop": "order_facts.a"}, "pattern"),
        ({"orders.gift_note": "order_facts"}, "pattern"),
        ({"orders.a": "order_facts.x", "orders.b": "order_facts.x"}, "mapped from both"),
    ],
)
def test_a_mapping_gold_cannot_take_is_refused(mapping: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SinkSettings(gold_columns=mapping)


def test_pairs_are_grouped_by_silver_table_and_a_facts_own_column_is_refused() -> None:
    mapping = {"orders.gift_note": "order_facts.gift_note", "orders.channel": "order_facts.via"}
    assert mapped_columns(mapping) == {
        "orders": ("order_facts", (("channel", "via"), ("gift_note", "gift_note")))
    }
    with pytest.raises(ConfigurationError, match="fills itself"):
        mapped_columns({"orders.note": "order_facts.status"})


def test_mapped_columns_are_selected_tracked_and_inserted_by_every_gold_statement() -> None:
    plain = GoldStatements.build()
    mapped = GoldStatements.build((("gift_note", "note"),))
    for statement in (mapped.close, mapped.close_truncated):
        assert "f.is_deleted, f.note)" in statement  # a new value opens a new fact
        assert "i.is_deleted, i.note)" in statement
        assert "o.gift_note AS note" in statement
    for statement in (mapped.open, mapped.open_truncated):
        assert "lineage_id, note)" in statement
        assert "$1, i.note" in statement
    assert "note" not in plain.open + plain.close + plain.open_truncated
