"""The demo runs end to end and its summary matches the database; bad input is one clear line."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis.asyncio as redis_async

from config.settings import Settings
from oltp.schema import CAPTURED_TABLES
from security.secret_scan import configured_secrets, log_files, secrets_in, secrets_in_files
from sinks.postgres.connection import connect
from tests.integration.cli import error_lines, run_cli


async def row_counts(settings: Settings) -> dict[str, int]:
    connection = await connect(settings.postgres)
    try:
        return {
            table: int(await connection.fetchval(f"SELECT count(*) FROM public.{table}"))
            for table in CAPTURED_TABLES
        }
    finally:
        await connection.close()


@pytest.mark.demo
@pytest.mark.timeout(400)
def test_demo_runs_end_to_end_and_its_summary_matches_the_database(
    settings: Settings, tmp_path: Path
) -> None:
    summary_path = tmp_path / "summary.json"
    result = run_cli("demo", "--transactions", "150", "--rate", "300", "--json", str(summary_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "demo ok" in result.stdout
    # No password in what the run printed or logged, nor in the services' logs it left.
    secrets = configured_secrets(settings)
    assert secrets_in(result.stdout + result.stderr, secrets) == []
    assert secrets_in_files(log_files(settings.stack.state_dir), secrets) == {}
    summary = json.loads(summary_path.read_text())
    assert summary["ok"] is True
    assert summary["transactions"] == 150
    tables = {row["table"]: row for row in summary["tables"]}
    assert set(tables) == set(CAPTURED_TABLES)
    for row in tables.values():
        assert row["events_captured"] == row["events_expected"], row
    counts = asyncio.run(row_counts(settings))
    assert {t: tables[t]["rows_in_database"] for t in CAPTURED_TABLES} == counts
    # The worker ran too: silver holds every live OLTP row, bronze at least one row per row.
    assert {t: tables[t]["silver_live_rows"] for t in CAPTURED_TABLES} == counts
    for table in CAPTURED_TABLES:
        assert tables[table]["bronze_rows"] >= counts[table]
    assert summary["sink_batches"] > 0
    # Every agent ran: gold and the Redis feature store equal SQL over the OLTP tables, a price
    # change went through the cache, and the web views answered.
    analytics = summary["analytics"]
    assert analytics["mismatches"] == []
    assert analytics["windows_compared"] > 0
    assert analytics["customers_compared"] > 0
    assert analytics["redis_hashes"] >= analytics["customers_compared"]
    # The demo's own orders stay within retention; older ones (other tests' loads) are said.
    if analytics["orders_beyond_retention"]:
        assert "older than the analytics retention" in result.stdout
    cache = summary["cache"]
    assert cache["price_after"] == cache["new_price"] != cache["old_price"]
    assert 0 < cache["evicted_after_s"] < 15
    assert summary["views"]["status"] == 200
    assert summary["views"]["answer"]["customer_id"] > 0
    for section in ("Hourly revenue", "Customer features", "Redis feature store", "evicted"):
        assert section in result.stdout
    assert "curl -s" in result.stdout
    # The sink's own statements stay fast under the demo load (default threshold: 1 s mean).
    slow = run_cli("db", "slow-queries", "--json")
    assert slow.returncode == 0, slow.stderr
    statements = json.loads(slow.stdout)
    # Migrations' one-off DDL (partition set-up DO blocks, CREATE ...) may take seconds on a
    # freshly started, busy cluster; they are not the sink's statements.
    ours = [
        s
        for s in statements
        if any(
            schema in s["query"] for schema in ("bronze.", "silver.", "gold.", "ops.", "bv_stage_")
        )
        and not _is_ddl(s["query"])
    ]
    assert ours == []


@pytest.mark.demo
def test_demo_check_only_exits_1_naming_a_broken_gold_row_and_redis_hash(
    settings: Settings,
) -> None:
    """Runs after the demo above (same module): one gold window and one Redis feature
    changed by a cent are each named by table and key; restored afterwards."""
    broken = asyncio.run(_break_one_window_and_one_feature(settings, Decimal("0.01")))
    try:
        result = run_cli("demo", "--check-only", timeout=120)
        assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
        [line] = error_lines(result.stderr)
        window, customer_key = broken
        assert f"gold.hourly_revenue window {window[0].isoformat()} {window[1]}" in line
        assert f"redis {customer_key}" in line
    finally:
        asyncio.run(_break_one_window_and_one_feature(settings, Decimal("-0.01"), broken))
    assert run_cli("demo", "--check-only", timeout=120).returncode == 0


async def _break_one_window_and_one_feature(
    settings: Settings, delta: Decimal, which: tuple[tuple[datetime, str], str] | None = None
) -> tuple[tuple[datetime, str], str]:
    """Add ``delta`` to the newest gold window's revenue and to one Redis lifetime value."""
    connection = await connect(settings.postgres)
    try:
        if which is None:
            row = await connection.fetchrow(
                "SELECT window_start, currency FROM gold.hourly_revenue "
                "WHERE order_count > 0 ORDER BY window_start DESC, currency LIMIT 1"
            )
            assert row is not None, "the demo left no gold window"
            customer = await connection.fetchval(
                "SELECT min(customer_id) FROM gold.customer_features"
            )
            which = ((row[0], row[1]), f"{settings.features.redis_prefix}{customer}")
        (window_start, currency), key = which
        await connection.execute(
            "UPDATE gold.hourly_revenue SET revenue = revenue + $3 "
            "WHERE window_start = $1 AND currency = $2",
            window_start, currency, delta,
        )  # fmt: skip
    finally:
        await connection.close()
    r = settings.redis
    user, password = r.client_auth()
    client = redis_async.Redis(host=r.host, port=r.port, username=user, password=password, db=r.db)
    try:
        value = Decimal((await client.hget(key, "lifetime_value")).decode())
        await client.hset(key, "lifetime_value", str(value + delta))
    finally:
        await client.aclose()
    return which


_DDL = re.compile(r"^\s*(?:--[^\n]*\n\s*)*(?:CREATE|ALTER|DO|GRANT|REVOKE|COMMENT|DROP)\b", re.I)


def _is_ddl(query: str) -> bool:
    # The report joins a statement's lines, so a leading ``--`` comment runs into the statement
    # after it; only the migration files start statements with comments, never the sink's SQL.
    return _DDL.match(query) is not None or query.lstrip().startswith("--")


def test_loadgen_refuses_a_negative_rate_in_one_line() -> None:
    result = run_cli("loadgen", "--rate", "-1")
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "error: --rate must be a positive number per second, got -1.0"
    ]


def test_unreachable_database_is_one_line_naming_the_address() -> None:
    result = run_cli("loadgen", "--transactions", "1", env={"BV_POSTGRES__PORT": "1"}, timeout=60)
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert "PostgreSQL at 127.0.0.1:1 is unreachable" in line
    assert "Traceback" not in result.stderr


def test_registering_over_a_different_connector_config_needs_update() -> None:
    assert run_cli("connector", "register").returncode == 0  # idempotent with the same config
    result = run_cli("connector", "register", env={"BV_TOPICS__PARTITIONS": "7"})
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert "already registered with a different configuration" in line
    assert "(topic.creation.default.partitions)" in line  # what differs, by name
    assert "--update" in line
    status = run_cli("connector", "status")
    assert status.returncode == 0
    assert "RUNNING" in status.stdout
