"""`bitvelocity quality` lists, reports and adds rules; bad input is one `error:` line."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from config.settings import Settings
from sinks.postgres.connection import connect
from tests.integration.cli import error_lines, run_cli
from tests.integration.throwaway import throwaway_database


@pytest.fixture(scope="module")
def database(settings: Settings) -> Iterator[str]:
    with throwaway_database(settings, "bv_quality_cli", oltp=False) as name:
        yield name


def rule_count(settings: Settings, database: str) -> int:
    async def count() -> int:
        connection = await connect(settings.postgres, database)
        try:
            return int(await connection.fetchval("SELECT count(*) FROM ops.data_quality_rules"))
        finally:
            await connection.close()

    return asyncio.run(count())


def test_rules_lists_the_four_seeded_rules(database: str) -> None:
    result = run_cli("quality", "rules", "--database", database, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(lines) == 4
    for expected in (
        ("customers", "email", "PATTERN", "ERROR"),
        ("orders", "total_amount", "RANGE", "ERROR"),
        ("orders", "customer_id", "REFERENCE", "ERROR"),
        ("order_items", "quantity", "NOT_NULL", "WARNING"),
    ):
        assert any(all(f" {part} " in line for part in expected) for line in lines), expected


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--table", "customers", "--column", "email", "--type", "PATTERN",
             "--config", '{"regex": "([a-z"}'],
            "error: new quality rule on customers.email (PATTERN): regex '([a-z' does not compile",
        ),
        (
            ["--table", "nowhere", "--column", "id", "--type", "NOT_NULL"],
            "error: new quality rule on nowhere.id: silver has no table 'nowhere'",
        ),
        (
            ["--table", "orders", "--column", "status", "--type", "RANGE", "--config", "{min: 1}"],
            "error: new quality rule on orders.status: rule_config is not valid JSON",
        ),
    ],
)  # fmt: skip
def test_add_rule_refuses_bad_input_in_one_line_with_exit_2(
    settings: Settings, database: str, arguments: list[str], message: str
) -> None:
    before = rule_count(settings, database)
    result = run_cli("quality", "add-rule", "--database", database, *arguments, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = error_lines(result.stderr)
    assert line.startswith(message)
    assert rule_count(settings, database) == before


def test_an_added_rule_is_listed_reported_and_cannot_be_added_twice(database: str) -> None:
    arguments = ["quality", "add-rule", "--database", database, "--table", "payments",
                 "--column", "amount", "--type", "RANGE", "--config", '{"min": 0}',
                 "--severity", "WARNING"]  # fmt: skip
    added = run_cli(*arguments, timeout=60)
    assert added.returncode == 0, added.stderr
    assert "added rule 5: WARNING RANGE on payments.amount" in added.stdout
    listed = run_cli("quality", "rules", "--database", database, timeout=60)
    assert "payments" in listed.stdout
    report = run_cli("quality", "report", "--since", "1h", "--database", database, timeout=60)
    assert report.returncode == 0, report.stderr
    assert "WARNING RANGE payments.amount" in report.stdout
    again = run_cli(*arguments, timeout=60)
    assert again.returncode == 2
    assert error_lines(again.stderr) == [
        "error: a RANGE rule on payments.amount exists already; see `bitvelocity quality rules` "
        "and change that one with SQL instead"
    ]


def test_report_refuses_an_unreadable_period(database: str) -> None:
    result = run_cli("quality", "report", "--since", "soon", "--database", database, timeout=60)
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "error: --since 'soon' is not a duration like 30m, 1h, 2d or 1h30m"
    ]
