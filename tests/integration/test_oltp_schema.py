"""The OLTP schema keeps its promises: audit trail, versions, status rules, indexes, roles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from config.settings import Settings
from oltp.loadgen import LoadgenConfig, run_loadgen
from oltp.schema import migrate_oltp
from sinks.postgres.connection import connect
from tests.integration.throwaway import throwaway_database


@pytest.fixture(scope="module")
def database(settings: Settings) -> Iterator[str]:
    with throwaway_database(settings, "bv_schema", warehouse=False) as name:
        asyncio.run(run_loadgen(settings, LoadgenConfig(seed=3, transactions=300), database=name))
        yield name


@pytest.fixture
async def db(settings: Settings, database: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect(settings.postgres, database)
    yield connection
    await connection.close()


async def test_migrations_are_idempotent(settings: Settings, database: str) -> None:
    assert await migrate_oltp(settings, database) == []


async def test_audit_trail_records_old_new_and_the_correlation_id(
    settings: Settings, db: asyncpg.Connection
) -> None:
    order = await db.fetchrow(
        "SELECT order_id, created_date, status FROM orders WHERE status = 'PENDING' LIMIT 1"
    )
    async with db.transaction():
        await db.execute("SET LOCAL bv.correlation_id = 'corr-test-42'")
        await db.execute(
            "UPDATE orders SET status = 'CONFIRMED' WHERE order_id = $1 AND created_date = $2",
            order["order_id"],
            order["created_date"],
        )
    audit = await db.fetchrow(
        "SELECT operation, old_data, new_data, correlation_id, changed_by FROM orders_audit "
        "WHERE order_id = $1 ORDER BY audit_id DESC LIMIT 1",
        order["order_id"],
    )
    assert audit["operation"] == "UPDATE"
    assert audit["correlation_id"] == "corr-test-42"
    assert '"status": "PENDING"' in audit["old_data"]
    assert '"status": "CONFIRMED"' in audit["new_data"]
    assert audit["changed_by"] == settings.postgres.admin_user  # the session's login


async def test_every_update_increments_version(db: asyncpg.Connection) -> None:
    before = await db.fetchrow(
        "SELECT product_id, version FROM products ORDER BY product_id LIMIT 1"
    )
    await db.execute("UPDATE products SET name = name WHERE product_id = $1", before["product_id"])
    after = await db.fetchval(
        "SELECT version FROM products WHERE product_id = $1", before["product_id"]
    )
    assert after == before["version"] + 1


async def test_status_cannot_skip_or_leave_a_final_state(db: asyncpg.Connection) -> None:
    order = await db.fetchrow(
        "SELECT order_id, created_date FROM orders WHERE status = 'PENDING' LIMIT 1"
    )
    with pytest.raises(asyncpg.CheckViolationError, match="cannot move from PENDING to DELIVERED"):
        await db.execute(
            "UPDATE orders SET status = 'DELIVERED' WHERE order_id = $1 AND created_date = $2",
            order["order_id"],
            order["created_date"],
        )


async def test_created_date_must_be_the_utc_date_of_created_at(db: asyncpg.Connection) -> None:
    customer = await db.fetchval("SELECT min(customer_id) FROM customers")
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "INSERT INTO orders (customer_id, currency, total_amount, created_at, created_date) "
            "VALUES ($1, 'USD', 1, '2026-11-20 23:30+00', '2026-11-21')",
            customer,
        )


async def test_orders_are_partitioned_monthly_and_premade(db: asyncpg.Connection) -> None:
    partitions = await db.fetch(
        "SELECT relid::regclass::text AS name FROM pg_partition_tree('public.orders') WHERE isleaf"
    )
    names = {row["name"] for row in partitions}
    assert "orders_default" in names
    assert sum(name.startswith("orders_p") for name in names) >= 6  # 3 back, current, 3 ahead
    rows_in_default = await db.fetchval("SELECT count(*) FROM ONLY orders_default")
    assert rows_in_default == 0  # every generated order landed in a monthly partition


async def child_indexes(db: asyncpg.Connection, parent_index: str) -> set[str]:
    rows = await db.fetch(
        "SELECT relid::regclass::text AS name FROM pg_partition_tree($1::regclass)", parent_index
    )
    return {row["name"] for row in rows}


@pytest.mark.parametrize(
    ("index", "query"),
    [
        (
            "orders_customer_recent_idx",
            "SELECT * FROM orders WHERE customer_id = 1 AND deleted_at IS NULL "
            "ORDER BY created_date DESC LIMIT 10",
        ),
        (
            "orders_open_status_idx",
            "SELECT * FROM orders WHERE status = 'PENDING' ORDER BY created_date DESC LIMIT 20",
        ),
    ],
)
async def test_partial_indexes_serve_the_queries_they_exist_for(
    db: asyncpg.Connection, index: str, query: str
) -> None:
    async with db.transaction():
        await db.execute("SET LOCAL enable_seqscan = off")  # tiny tables: force the planner's hand
        plan = "\n".join(row[0] for row in await db.fetch(f"EXPLAIN {query}"))
    names = await child_indexes(db, index)
    assert any(name in plan for name in names), plan


async def test_worker_role_cannot_alter_oltp_tables(settings: Settings, database: str) -> None:
    worker = await connect(
        settings.postgres,
        database,
        user=settings.postgres.worker_user,
        password=settings.postgres.worker_password.get_secret_value(),
    )
    try:
        assert await worker.fetchval("SELECT count(*) FROM orders") > 0  # it may read
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await worker.execute("ALTER TABLE orders ADD COLUMN sneaky int")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await worker.execute("CREATE TABLE public.sneaky (id int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await worker.execute("DELETE FROM customers")
    finally:
        await worker.close()


async def test_debezium_role_can_replicate_and_read_but_not_write(
    settings: Settings, database: str
) -> None:
    dbz = await connect(
        settings.postgres,
        database,
        user=settings.postgres.debezium_user,
        password=settings.postgres.debezium_password.get_secret_value(),
    )
    try:
        assert await dbz.fetchval(
            "SELECT rolreplication FROM pg_roles WHERE rolname = current_user"
        )
        assert await dbz.fetchval("SELECT count(*) FROM products") > 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await dbz.execute("UPDATE products SET price = 0")
    finally:
        await dbz.close()


async def test_publication_publishes_partitions_under_their_root(db: asyncpg.Connection) -> None:
    row = await db.fetchrow(
        "SELECT pubviaroot FROM pg_publication WHERE pubname = 'bitvelocity_cdc'"
    )
    assert row["pubviaroot"] is True
    tables = {
        (r[0], r[1])
        for r in await db.fetch(
            "SELECT schemaname, tablename FROM pg_publication_tables "
            "WHERE pubname = 'bitvelocity_cdc'"
        )
    }
    captured = {"categories", "customers", "products", "orders", "order_items", "payments"}
    # cdc.heartbeat: published so a quiet database's slot still moves, never captured
    assert tables == {("public", t) for t in captured} | {("cdc", "heartbeat")}
