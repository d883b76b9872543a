"""Partition lifecycle against a real PostgreSQL with pg_partman, in a throw-away database:
report, premake, detach to archive, drop, dry run, idempotence, the untouchable default."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from config.settings import PartitionSettings, Settings
from sinks.postgres.connection import connect
from sinks.postgres.partitions import (
    UnknownPartitionedTableError,
    apply_retention,
    partition_report,
)
from tests.integration.cli import error_lines, run_cli
from tests.integration.throwaway import throwaway_database

BRONZE = {
    f"bronze.{t}"
    for t in ("categories", "customers", "products", "orders", "order_items", "payments")
} | {f"bronze.{t}" for t in ("chat_messages", "device_telemetry", "social_posts")}  # 0007
OLD_DAY = date(2020, 1, 1)


@pytest.fixture(scope="module")
def database(settings: Settings) -> Iterator[str]:
    with throwaway_database(settings, "bv_parts") as name:
        yield name


@pytest.fixture
async def db(settings: Settings, database: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect(settings.postgres, database)
    yield connection
    await connection.close()


async def add_old_child(db: asyncpg.Connection, parent: str, rows: int) -> str:
    """A daily child of a bronze parent on OLD_DAY, made by pg_partman, holding ``rows``."""
    await db.execute(
        "SELECT partman.create_partition_time($1, ARRAY[$2::timestamptz], false)",
        parent,
        datetime(OLD_DAY.year, OLD_DAY.month, OLD_DAY.day, tzinfo=UTC),
    )
    for offset in range(rows):
        await insert_bronze(db, parent, OLD_DAY, offset)
    return f"{parent}_p2020_01_01"


async def insert_bronze(db: asyncpg.Connection, parent: str, ingestion: date, offset: int) -> None:
    await db.execute(
        f"INSERT INTO {parent} (event_id, event_timestamp, source_system, operation_type, "
        "table_name, raw_payload, source_topic, source_partition, source_offset, ingestion_date) "
        "VALUES ($1, $2, 'test', 'INSERT', $3, '{}', 'test-topic', 0, $4, $5)",
        uuid.uuid4(),
        datetime(ingestion.year, ingestion.month, ingestion.day, tzinfo=UTC),
        parent,
        offset,
        ingestion,
    )


async def attached(db: asyncpg.Connection, parent: str) -> set[str]:
    rows = await db.fetch(
        "SELECT inhrelid::regclass::text AS name FROM pg_inherits WHERE inhparent = $1::regclass",
        parent,
    )
    return {f"{parent.split('.')[0]}.{row['name'].split('.')[-1]}" for row in rows}


async def test_report_lists_every_managed_table_with_children_and_bounds(
    db: asyncpg.Connection,
) -> None:
    now = datetime.now(UTC)
    report = {info.parent: info for info in await partition_report(db, now=now)}
    assert set(report) == BRONZE | {"silver.orders", "public.orders"}
    for info in report.values():
        assert info.default is not None
        assert info.default.rows == 0
        assert [child.is_default for child in info.children][-1]  # default listed last
    today = now.date()
    bronze = report["bronze.orders"]
    assert bronze.premade_ahead >= 7
    current = next(c for c in bronze.children if c.bounds.lower_text == today.isoformat())
    assert current.bounds.upper_text == (today + timedelta(days=1)).isoformat()
    assert current.qualified == f"bronze.orders_p{today:%Y_%m_%d}"
    assert current.size_bytes > 0
    month = today.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    for parent in ("public.orders", "silver.orders"):
        info = report[parent]
        assert info.premade_ahead >= 3
        expected = f"FOR VALUES FROM ('{month}') TO ('{next_month}')"
        assert expected in {child.bounds.expression for child in info.children}


async def test_exact_counts_count_rows(db: asyncpg.Connection) -> None:
    today = datetime.now(UTC).date()
    await insert_bronze(db, "bronze.categories", today, 1)
    report = {info.parent: info for info in await partition_report(db, exact_counts=True)}
    counts = {child.bounds.lower_text: child.rows for child in report["bronze.categories"].children}
    assert counts[today.isoformat()] == 1
    assert all(child.rows_exact for child in report["bronze.categories"].children)


async def test_dry_run_lists_the_expired_child_and_changes_nothing(db: asyncpg.Connection) -> None:
    child = await add_old_child(db, "bronze.customers", rows=1)
    before = await attached(db, "bronze.customers")
    settings = PartitionSettings(retention={"bronze.customers": timedelta(days=30)})
    outcome = await apply_retention(db, settings, now=datetime.now(UTC), dry_run=True)
    assert [step.child.qualified for step in outcome.retired] == [child]
    assert outcome.retired[0].archive_table == "archive.bronze_customers_20200101_20200102"
    assert await attached(db, "bronze.customers") == before
    assert (
        await db.fetchval("SELECT to_regclass('archive.bronze_customers_20200101_20200102')")
        is None
    )
    assert await db.fetchval(f"SELECT count(*) FROM {child}") == 1


async def test_detach_moves_the_expired_child_with_its_rows_to_archive_once(
    db: asyncpg.Connection,
) -> None:
    child = await add_old_child(db, "bronze.orders", rows=2)
    settings = PartitionSettings(retention={"bronze.orders": timedelta(days=30)})
    outcome = await apply_retention(db, settings, now=datetime.now(UTC), dry_run=False)
    assert [(s.child.qualified, s.action) for s in outcome.retired] == [(child, "detach")]
    assert child not in await attached(db, "bronze.orders")
    archived = "archive.bronze_orders_20200101_20200102"
    assert (
        await db.fetchval(f"SELECT count(*) FROM {archived} WHERE ingestion_date = $1", OLD_DAY)
        == 2
    )
    assert (
        await db.fetchval("SELECT count(*) FROM bronze.orders WHERE ingestion_date = $1", OLD_DAY)
        == 0
    )
    comment = await db.fetchval("SELECT obj_description($1::regclass)", archived)
    assert "bronze.orders" in comment
    assert "2020-01-01" in comment

    again = await apply_retention(db, settings, now=datetime.now(UTC), dry_run=False)
    assert not again.changed


async def test_drop_mode_drops_the_expired_child(db: asyncpg.Connection) -> None:
    child = await add_old_child(db, "bronze.payments", rows=1)
    settings = PartitionSettings(
        retention={"bronze.payments": timedelta(days=30)}, archive_mode="drop"
    )
    outcome = await apply_retention(db, settings, now=datetime.now(UTC), dry_run=False)
    assert [(s.child.qualified, s.action, s.archive_table) for s in outcome.retired] == [
        (child, "drop", None)
    ]
    assert await db.fetchval("SELECT to_regclass($1)", child) is None
    assert (
        await db.fetchval("SELECT to_regclass('archive.bronze_payments_20200101_20200102')") is None
    )
    assert not (await apply_retention(db, settings, now=datetime.now(UTC), dry_run=False)).changed


async def test_default_partition_is_never_touched_and_its_rows_are_warned_about(
    db: asyncpg.Connection,
) -> None:
    await insert_bronze(db, "bronze.products", date(2019, 6, 1), 0)  # no child: lands in default
    now = datetime.now(UTC)
    settings = PartitionSettings(retention={"bronze.products": timedelta(0)})
    outcome = await apply_retention(db, settings, now=now, dry_run=False)
    retired = {step.child.bounds.upper_text for step in outcome.retired}
    # Zero retention: exactly the children that ended by today (oracle: the calendar).
    assert retired == {(now.date() - timedelta(days=k)).isoformat() for k in range(0, 3)}
    assert "bronze.products_default" in await attached(db, "bronze.products")
    assert await db.fetchval("SELECT count(*) FROM ONLY bronze.products_default") == 1
    assert any("bronze.products_default holds 1 row:" in w for w in outcome.warnings)


async def test_premake_keeps_at_least_the_configured_future_partitions(
    db: asyncpg.Connection,
) -> None:
    now = datetime.now(UTC)
    settings = PartitionSettings(retention={}, premake={"silver.orders": 6})
    outcome = await apply_retention(db, settings, now=now, dry_run=False)
    assert [step.parent for step in outcome.premade] == ["silver.orders"]
    report = {info.parent: info for info in await partition_report(db, now=now)}
    assert report["silver.orders"].premade_ahead >= 6
    starts = {child.bounds.lower_text for child in report["silver.orders"].children}
    month = now.date().replace(day=1)
    for _ in range(6):
        month = (month + timedelta(days=32)).replace(day=1)
        assert month.isoformat() in starts
    assert not (await apply_retention(db, settings, now=now, dry_run=False)).changed


async def test_a_setting_naming_an_unmanaged_table_is_refused(db: asyncpg.Connection) -> None:
    settings = PartitionSettings(retention={"bronze.ordrs": timedelta(days=1)})
    with pytest.raises(UnknownPartitionedTableError, match=r"bronze\.ordrs"):
        await apply_retention(db, settings, now=datetime.now(UTC), dry_run=True)


def test_cli_reports_json_and_refuses_unknown_tables_in_one_line(database: str) -> None:
    report = run_cli("partitions", "report", "--json", "--database", database)
    assert report.returncode == 0, report.stderr
    parents = {entry["parent"] for entry in json.loads(report.stdout)}
    assert parents == BRONZE | {"silver.orders", "public.orders"}

    dry = run_cli("partitions", "apply", "--dry-run", "--database", database)
    assert dry.returncode == 0, dry.stderr

    bad = run_cli(
        "partitions",
        "apply",
        "--database",
        database,
        env={"BV_PARTITIONS__RETENTION": '{"bronze.nope": "P1D"}'},
    )
    assert bad.returncode == 2
    lines = error_lines(bad.stderr)
    assert len(lines) == 1, bad.stderr
    assert "bronze.nope" in lines[0]
