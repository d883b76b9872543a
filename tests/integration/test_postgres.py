"""PostgreSQL is configured for Debezium and the migration runner applies files exactly once."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from config.settings import Settings
from sinks.postgres.connection import connect
from sinks.postgres.migrate import MigrationError, apply_migrations, load_migrations


@pytest.fixture
async def connection(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(settings.postgres)
    yield conn
    await conn.close()


async def test_logical_replication_is_enabled(connection: asyncpg.Connection) -> None:
    assert await connection.fetchval("SHOW wal_level") == "logical"
    assert int(await connection.fetchval("SHOW max_replication_slots")) >= 4
    assert await connection.fetchval("SHOW listen_addresses") == "127.0.0.1"


async def test_password_is_required_on_tcp(settings: Settings) -> None:
    pg = settings.postgres
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(
            host=pg.host, port=pg.port, user=pg.admin_user, database=pg.database, password="wrong"
        )


async def test_migrations_apply_once_and_refuse_edited_history(
    connection: asyncpg.Connection, tmp_path: Path
) -> None:
    namespace = f"test_{secrets.token_hex(4)}"
    table = f"public.{namespace}_t"
    (tmp_path / "0001_create.sql").write_text(f"CREATE TABLE IF NOT EXISTS {table} (id int);")
    (tmp_path / "0002_seed.sql").write_text(f"INSERT INTO {table} VALUES (1);")
    try:
        first = await apply_migrations(connection, namespace, load_migrations(tmp_path))
        second = await apply_migrations(connection, namespace, load_migrations(tmp_path))
        assert [m.version for m in first] == [1, 2]
        assert second == []
        assert await connection.fetchval(f"SELECT count(*) FROM {table}") == 1

        (tmp_path / "0002_seed.sql").write_text(f"INSERT INTO {table} VALUES (2);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_migrations(connection, namespace, load_migrations(tmp_path))
    finally:
        await connection.execute(f"DROP TABLE IF EXISTS {table}")
        await connection.execute(
            "DELETE FROM bv_migrations.applied WHERE namespace = $1", namespace
        )


async def test_a_migration_numbered_below_an_applied_one_is_refused_not_applied_late(
    connection: asyncpg.Connection, tmp_path: Path
) -> None:
    namespace = f"test_{secrets.token_hex(4)}"
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0003_c.sql").write_text("SELECT 3;")  # 0002 reserved by another branch
    try:
        applied = await apply_migrations(connection, namespace, load_migrations(tmp_path))
        assert [m.version for m in applied] == [1, 3]
        (tmp_path / "0002_b.sql").write_text("SELECT 2;")
        with pytest.raises(MigrationError, match="older than 0003"):
            await apply_migrations(connection, namespace, load_migrations(tmp_path))
    finally:
        await connection.execute(
            "DELETE FROM bv_migrations.applied WHERE namespace = $1", namespace
        )


async def test_a_failing_migration_leaves_no_trace(
    connection: asyncpg.Connection, tmp_path: Path
) -> None:
    namespace = f"test_{secrets.token_hex(4)}"
    table = f"public.{namespace}_t"
    (tmp_path / "0001_half.sql").write_text(f"CREATE TABLE {table} (id int); SELECT 1/0;")
    with pytest.raises(asyncpg.DivisionByZeroError):
        await apply_migrations(connection, namespace, load_migrations(tmp_path))
    assert await connection.fetchval("SELECT to_regclass($1)", table) is None
    assert (
        await connection.fetchval(
            "SELECT count(*) FROM bv_migrations.applied WHERE namespace = $1", namespace
        )
        == 0
    )
