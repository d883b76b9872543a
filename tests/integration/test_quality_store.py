"""The quality store against a real, freshly migrated warehouse of its own.

Rules reload without a restart, references are looked up in silver (hard deletes do not
count), and the sweep settles pending REFERENCE checks on the silver rows, writing results.
Expected rows and scores are worked out by hand in each test.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from config.settings import Settings
from quality.engine import evaluate_batch, references_needed
from quality.rules import InvalidRuleError, RuleType
from sinks.postgres.connection import connect
from sinks.postgres.quality.catalog import UnknownColumnError, load_silver_catalog
from sinks.postgres.quality.store import (
    RuleCache,
    delete_pending,
    load_due_pending,
    lookup_references,
    record_verdict,
    sweep_pending,
)
from tests.integration.throwaway import throwaway_database

GRACE = timedelta(minutes=10)
TODAY = datetime.now(UTC).date()


@pytest.fixture(scope="module")
def database(settings: Settings) -> Iterator[str]:
    with throwaway_database(settings, "bv_quality", oltp=False) as name:
        yield name


@pytest.fixture
async def db(settings: Settings, database: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect(settings.postgres, database)
    yield connection
    await connection.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


_SOURCE = {
    "source_lsn": 1,
    "source_partition": 0,
    "source_offset": 0,
    "source_committed_at": datetime(2024, 5, 1, tzinfo=UTC),
    "processing_version": 1,
}


async def insert_silver(db: asyncpg.Connection, table: str, row: dict[str, Any]) -> None:
    """Insert a silver row with made-up source columns (the writer's job in production)."""
    full = {
        **_SOURCE,
        "source_bronze_id": uuid.uuid4(),
        "data_quality_score": Decimal("1.00"),
        "quality_checks_passed": [],
        "quality_issues": [],
        **row,
    }
    columns = ", ".join(full)
    placeholders = ", ".join(f"${i}" for i in range(1, len(full) + 1))
    await db.execute(
        f"INSERT INTO silver.{table} ({columns}) VALUES ({placeholders})", *full.values()
    )


async def insert_customer(db: asyncpg.Connection, customer_id: int, **extra: Any) -> None:
    await insert_silver(
        db, "customers", {"customer_id": customer_id, "email": f"c{customer_id}@x.io", **extra}
    )


async def quality_of(db: asyncpg.Connection, order_id: int) -> tuple[Decimal, list[str], list[str]]:
    row = await db.fetchrow(
        "SELECT data_quality_score, quality_checks_passed, quality_issues "
        "FROM silver.orders WHERE order_id = $1",
        order_id,
    )
    assert row is not None
    return row[0], list(row[1]), list(row[2])


async def pending_rows(db: asyncpg.Connection, order_id: int) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM ops.pending_reference_checks "
            "WHERE table_name = 'orders' AND (row_key->>'order_id')::bigint = $1",
            order_id,
        )
    )


async def write_orders(
    db: asyncpg.Connection, orders: list[dict[str, Any]], event_time: datetime, now: datetime
) -> None:
    """What the medallion writer does: evaluate, write silver rows with the verdict, record."""
    cache = RuleCache()
    rules = await cache.rules_for(db, "orders")
    found = await lookup_references(db, references_needed("orders", orders, rules), cache.catalog)
    verdict = evaluate_batch(
        "orders", orders, rules, found, event_times=[event_time] * len(orders), now=now, grace=GRACE
    )
    for row, row_verdict in zip(orders, verdict.rows, strict=True):
        await insert_silver(
            db,
            "orders",
            {
                **row,
                "data_quality_score": row_verdict.score,
                "quality_checks_passed": list(row_verdict.passed),
                "quality_issues": list(row_verdict.issues),
            },
        )
    await record_verdict(db, verdict, batch_id=None)


def order(order_id: int, customer_id: int, total: str = "10.00") -> dict[str, Any]:
    return {
        "order_id": order_id,
        "order_date": TODAY,
        "customer_id": customer_id,
        "status": "PENDING",
        "total_amount": Decimal(total),
    }


# Rule cache ------------------------------------------------------------------------------


async def test_rule_cache_loads_the_seeded_rules(db: asyncpg.Connection) -> None:
    cache = RuleCache()
    assert [(r.rule_type, r.column_name) for r in await cache.rules_for(db, "orders")] == [
        (RuleType.RANGE, "total_amount"),
        (RuleType.REFERENCE, "customer_id"),
    ]
    assert len(await cache.all_rules(db)) == 4


async def test_rule_cache_picks_up_a_rule_inserted_after_first_load_without_restart(
    db: asyncpg.Connection,
) -> None:
    clock = FakeClock()
    cache = RuleCache(timedelta(seconds=5), clock=clock)
    before = await cache.rules_for(db, "payments")
    assert before == []
    rule_id = await db.fetchval(
        "INSERT INTO ops.data_quality_rules (table_name, column_name, rule_type, rule_config, "
        "severity) VALUES ('payments', 'amount', 'RANGE', '{\"min\": 0}', 'WARNING') "
        "RETURNING rule_id"
    )
    try:
        clock.now += 4.9  # inside the refresh interval: the cache does not even ask
        assert await cache.rules_for(db, "payments") == []
        assert cache.loads == 1
        clock.now += 0.1
        [added] = await cache.rules_for(db, "payments")
        assert (added.rule_id, added.rule_type, added.bounds) == (
            rule_id,
            RuleType.RANGE,
            (Decimal(0), None),
        )
        assert cache.loads == 2
        clock.now += 60  # asked again, nothing changed: no reload
        assert len(await cache.rules_for(db, "payments")) == 1
        assert cache.loads == 2
        await db.execute(
            "UPDATE ops.data_quality_rules SET is_active = false WHERE rule_id = $1", rule_id
        )
        clock.now += 5
        assert await cache.rules_for(db, "payments") == []  # an update is seen too
    finally:
        await db.execute("DELETE FROM ops.data_quality_rules WHERE rule_id = $1", rule_id)


async def test_malformed_rules_and_rules_on_unknown_columns_are_skipped_not_fatal(
    db: asyncpg.Connection,
) -> None:
    ids = [
        await db.fetchval(
            "INSERT INTO ops.data_quality_rules (table_name, column_name, rule_type, "
            "rule_config, severity) VALUES ($1, $2, $3, $4::jsonb, 'ERROR') RETURNING rule_id",
            *values,
        )
        for values in (
            ("payments", "method", "PATTERN", '{"regex": "(unclosed"}'),
            ("payments", "no_such_column", "NOT_NULL", "{}"),
            ("payments", "order_id", "REFERENCE", '{"table": "nowhere", "column": "id"}'),
            ("payments", "status", "NOT_NULL", "{}"),
        )
    ]
    try:
        skipped: list[InvalidRuleError] = []
        rules = await RuleCache(on_invalid=skipped.append).rules_for(db, "payments")
        assert [rule.rule_id for rule in rules] == [ids[3]]
        messages = sorted(str(error) for error in skipped)
        assert len(messages) == 3
        assert any("does not compile" in m for m in messages)
        assert any("has no column 'no_such_column'" in m for m in messages)
        assert any("silver has no table 'nowhere'" in m for m in messages)
    finally:
        await db.execute("DELETE FROM ops.data_quality_rules WHERE rule_id = ANY($1)", ids)


# Reference lookups ------------------------------------------------------------------------


async def test_lookup_finds_existing_and_soft_deleted_rows_but_not_hard_deleted_ones(
    db: asyncpg.Connection,
) -> None:
    await insert_customer(db, 9001)
    await insert_customer(db, 9002, hard_deleted=True, deleted_at=datetime.now(UTC))
    await insert_customer(db, 9003, deleted_at=datetime.now(UTC))  # soft delete: still exists
    needed = {("customers", "customer_id"): {9001, 9002, 9003, 9004, "not-a-number", 2**70}}
    found = await lookup_references(db, needed)
    assert found == {("customers", "customer_id"): {"9001", "9003"}}


async def test_lookup_refuses_a_target_outside_the_silver_catalog(db: asyncpg.Connection) -> None:
    catalog = await load_silver_catalog(db)
    assert "orders" in catalog.tables
    assert not any(name.startswith("orders_p") for name in catalog.tables)  # no partitions
    with pytest.raises(UnknownColumnError, match="silver has no table 'pg_user'"):
        await lookup_references(db, {("pg_user", "usename"): {"postgres"}}, catalog)
    with pytest.raises(UnknownColumnError, match="has no column 'email\"; --'"):
        await lookup_references(db, {("customers", 'email"; --'): {"x"}}, catalog)


# Sweep --------------------------------------------------------------------------------------


async def test_a_reference_arriving_later_resolves_and_one_never_arriving_fails(
    db: asyncpg.Connection,
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0)
    await write_orders(db, [order(501, 7001), order(502, 7002)], event_time=t0, now=t0)

    # Both references are missing but inside the grace period: pending, not failed.
    for order_id in (501, 502):
        assert await quality_of(db, order_id) == (Decimal("1.00"), ["RANGE:total_amount"], [])
        assert await pending_rows(db, order_id) == 1

    # Customer 7001 arrives on its own topic 2 s later; the sweep runs inside the grace.
    await insert_customer(db, 7001)
    async with db.transaction():
        report = await sweep_pending(db, t0 + timedelta(seconds=2), batch_id=77)
    assert (report.resolved, report.failed, report.still_pending) == (1, 0, 1)
    assert await quality_of(db, 501) == (
        Decimal("1.00"),
        ["RANGE:total_amount", "REFERENCE:customer_id"],
        [],
    )
    assert await pending_rows(db, 501) == 0
    assert await pending_rows(db, 502) == 1

    # Customer 7002 never arrives: at the deadline (event time + grace) the check fails.
    async with db.transaction():
        report = await sweep_pending(db, t0 + GRACE, batch_id=78)
    assert (report.resolved, report.failed, report.still_pending) == (0, 1, 0)
    assert await quality_of(db, 502) == (
        Decimal("0.50"),
        ["RANGE:total_amount"],
        ["ERROR:REFERENCE:customer_id"],
    )
    assert await pending_rows(db, 502) == 0

    results = await db.fetch(
        "SELECT batch_id, record_count, failed_count, success_rate, sample_failures::text, "
        "checked_at FROM ops.data_quality_results q JOIN ops.data_quality_rules r "
        "USING (rule_id) WHERE r.rule_type = 'REFERENCE' AND batch_id IN (77, 78) "
        "ORDER BY batch_id"
    )
    assert [(r[0], r[1], r[2], r[3]) for r in results] == [
        (77, 1, 0, Decimal("1.0000")),
        (78, 1, 1, Decimal("0.0000")),
    ]
    assert json.loads(results[1][4]) == [
        {
            "key": {"order_id": 502, "order_date": TODAY.isoformat()},
            "column": "customer_id",
            "value": "7002",
            "reason": f"no customers.customer_id by the deadline {(t0 + GRACE).isoformat()}",
        }
    ]
    assert results[1][5] == t0 + GRACE


async def test_the_batch_writes_one_result_per_rule_with_redacted_samples(
    db: asyncpg.Connection,
) -> None:
    await insert_customer(db, 7101)
    t0 = datetime.now(UTC)
    before = await db.fetchval("SELECT coalesce(max(check_id), 0) FROM ops.data_quality_results")
    await write_orders(
        db, [order(601, 7101, total="-5.00"), order(602, 7101)], event_time=t0, now=t0
    )
    rows = await db.fetch(
        "SELECT r.rule_type, q.record_count, q.failed_count, q.success_rate, "
        "q.sample_failures::text FROM ops.data_quality_results q JOIN ops.data_quality_rules r "
        "USING (rule_id) WHERE q.check_id > $1 ORDER BY r.rule_id",
        before,
    )
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("RANGE", 2, 1, Decimal("0.5000")),
        ("REFERENCE", 2, 0, Decimal("1.0000")),
    ]
    assert json.loads(rows[0][4]) == [
        {
            "key": {"order_id": 601, "order_date": TODAY.isoformat()},
            "column": "total_amount",
            "value": "-5.00",
            "reason": "below min 0",
        }
    ]
    assert await quality_of(db, 601) == (
        Decimal("0.50"),
        ["REFERENCE:customer_id"],
        ["ERROR:RANGE:total_amount"],
    )


async def test_a_pending_check_whose_row_changed_since_is_dropped_without_a_verdict(
    db: asyncpg.Connection,
) -> None:
    t0 = datetime.now(UTC)
    await write_orders(db, [order(701, 7201)], event_time=t0, now=t0)
    # A newer change points the order at an existing customer and was scored by the writer.
    await insert_customer(db, 7202)
    await db.execute(
        "UPDATE silver.orders SET customer_id = 7202, "
        "quality_checks_passed = ARRAY['RANGE:total_amount', 'REFERENCE:customer_id'] "
        "WHERE order_id = 701"
    )
    async with db.transaction():
        report = await sweep_pending(db, t0 + GRACE)
    assert report.obsolete >= 1
    assert await pending_rows(db, 701) == 0
    assert await quality_of(db, 701) == (
        Decimal("1.00"),
        ["RANGE:total_amount", "REFERENCE:customer_id"],
        [],
    )


async def test_pending_checks_load_with_their_rule_and_can_be_deleted(
    db: asyncpg.Connection,
) -> None:
    t0 = datetime.now(UTC)
    await write_orders(db, [order(801, 7301)], event_time=t0, now=t0)
    checks = [c for c in await load_due_pending(db) if c.row_key.get("order_id") == 801]
    [check] = checks
    assert check.rule is not None
    assert check.rule.reference == ("customers", "customer_id")
    assert dict(check.row_key) == {"order_id": 801, "order_date": TODAY.isoformat()}
    assert check.referenced_value == "7301"
    assert check.deadline == t0 + GRACE
    assert await delete_pending(db, checks) == 1
    assert await pending_rows(db, 801) == 0
