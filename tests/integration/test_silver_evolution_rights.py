"""The worker changes silver's shape only through ops.evolve_silver_column, and only losslessly
(decision 0021): it has no ALTER right of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from config.settings import Settings
from sinks.postgres.connection import connect
from tests.integration.throwaway import throwaway_database

EVOLVE = "SELECT ops.evolve_silver_column($1, $2, $3)"
TYPE = (
    "SELECT data_type, numeric_precision, numeric_scale FROM information_schema.columns "
    "WHERE table_schema = 'silver' AND table_name = $1 AND column_name = $2"
)


@pytest.fixture(scope="module")
def database(settings: Settings) -> Iterator[str]:
    with throwaway_database(settings, "bv_evolve", oltp=False) as name:
        yield name


@pytest.fixture
async def worker(settings: Settings, database: str) -> AsyncIterator[asyncpg.Connection]:
    pg = settings.postgres
    connection = await connect(
        pg, database, user=pg.worker_user, password=pg.worker_password.get_secret_value()
    )
    try:
        yield connection
    finally:
        await connection.close()


async def test_the_worker_cannot_alter_silver_itself(worker: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await worker.execute("ALTER TABLE silver.payments ADD COLUMN note text")


async def test_lossless_changes_pass_through_the_function(worker: asyncpg.Connection) -> None:
    await worker.execute(EVOLVE, "orders", "gift_note", "text")
    await worker.execute(EVOLVE, "order_items", "unit_price", "numeric(14, 3)")
    await worker.execute(EVOLVE, "order_items", "quantity", "bigint")
    assert tuple(await worker.fetchrow(TYPE, "orders", "gift_note")) == ("text", None, None)
    assert tuple(await worker.fetchrow(TYPE, "order_items", "unit_price")) == ("numeric", 14, 3)
    assert (await worker.fetchrow(TYPE, "order_items", "quantity"))[0] == "bigint"


@pytest.mark.parametrize(
    ("table", "column", "kind"),
    [
        ("payments", "amount", "numeric(12, 1)"),  # fewer decimals: would round
        ("payments", "amount", "numeric(11, 2)"),  # fewer integer digits
        ("payments", "amount", "integer"),
        ("payments", "amount; DROP TABLE silver.payments", "text"),
        ("consumer_offsets", "x", "text"),
        ("payments", "note", "text; DROP TABLE silver.payments"),
    ],
)
async def test_anything_lossy_or_foreign_is_refused(
    worker: asyncpg.Connection, table: str, column: str, kind: str
) -> None:
    with pytest.raises(asyncpg.RaiseError):
        await worker.execute(EVOLVE, table, column, kind)
    assert tuple(await worker.fetchrow(TYPE, "payments", "amount")) == ("numeric", 12, 2)
