"""Least privilege in PostgreSQL, checked by logging in as each role and trying what it must not.

- ``bv_worker`` (the pipeline, the analytics agent, the cache loaders) reads the OLTP tables
  and writes only the warehouse schemas; it owns nothing, so no DDL, DROP or TRUNCATE.
- ``debezium`` streams WAL and reads the captured tables; nothing else.
- No role a running process logs in with is a superuser (or may create roles or databases);
  only operator commands (``stack``, ``migrate``, ``backup``) use the admin login.
- No role the settings name is a superuser, the admin login included: it creates databases
  and roles and owns what it migrates, but the superuser stays inside the stack's bootstrap
  (``stack/postgres_bootstrap.sql``, docs/decisions/0016).
Grants live in ``oltp/migrations/0002_roles.sql`` and ``sinks/postgres/migrations/0004_*``
(``0007_*`` for the scale-out bronze tables).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from admin.connectors import oltp_connector_spec
from cache.loaders import PostgresSource
from config.settings import Settings
from sinks.postgres.connection import connect
from tests.integration.throwaway import throwaway_database

DENIED = (asyncpg.InsufficientPrivilegeError,)


@pytest.fixture(scope="module")
def database(settings: Settings) -> Iterator[str]:
    with throwaway_database(settings, "bv_roles") as name:
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


@pytest.fixture
async def debezium(settings: Settings, database: str) -> AsyncIterator[asyncpg.Connection]:
    pg = settings.postgres
    connection = await connect(
        pg, database, user=pg.debezium_user, password=pg.debezium_password.get_secret_value()
    )
    try:
        yield connection
    finally:
        await connection.close()


async def refused(connection: asyncpg.Connection, statement: str) -> bool:
    """True when PostgreSQL refuses ``statement`` for lack of privilege (rolled back)."""
    if statement.startswith("CREATE DATABASE"):  # cannot run in a transaction block
        try:
            await connection.execute(statement)
        except DENIED:
            return True
        return False
    transaction = connection.transaction()
    await transaction.start()
    try:
        await connection.execute(statement)
    except DENIED:
        return True
    finally:
        await transaction.rollback()
    return False


WORKER_MUST_NOT = [
    "INSERT INTO public.categories (name) VALUES ('x')",
    "UPDATE public.customers SET email = 'x@example.com'",
    "DELETE FROM public.orders",
    "TRUNCATE public.payments",
    "CREATE TABLE public.worker_made (id int)",
    "CREATE TABLE bronze.worker_made (id int)",
    "CREATE TABLE silver.worker_made (id int)",
    "CREATE SCHEMA worker_made",
    "DROP TABLE silver.customers",
    "ALTER TABLE gold.order_facts ADD COLUMN worker_made int",
    "TRUNCATE bronze.orders",
    "DELETE FROM bronze.orders",
    "UPDATE bronze.orders SET table_name = 'x'",
    "DELETE FROM bronze.chat_messages",  # the scale-out bronze tables (migration 0007)
    "UPDATE bronze.social_posts SET table_name = 'x'",
    "TRUNCATE bronze.device_telemetry",
    "DELETE FROM ops.consumer_offsets",
    "UPDATE ops.data_quality_rules SET is_active = false",
    "DELETE FROM ref.currency_rates",
    "CREATE ROLE worker_made",
    "CREATE DATABASE worker_made",
    "ALTER ROLE bv_worker SUPERUSER",
    "COPY ref.currency_rates FROM '/etc/hostname'",
    "COPY (SELECT 1) TO PROGRAM 'true'",
    "SELECT pg_read_file('/etc/hostname')",
]


@pytest.mark.parametrize("statement", WORKER_MUST_NOT)
async def test_the_worker_role_is_refused_outside_its_warehouse_writes(
    worker: asyncpg.Connection, statement: str
) -> None:
    assert await refused(worker, statement), f"bv_worker may run: {statement}"


async def test_the_worker_role_writes_the_warehouse_and_reads_the_source(
    worker: asyncpg.Connection,
) -> None:
    may = {
        ("bronze.orders", "INSERT"),
        ("bronze.chat_messages", "INSERT"),
        ("bronze.device_telemetry", "INSERT"),
        ("bronze.social_posts", "SELECT"),
        ("silver.orders", "UPDATE"),
        ("gold.order_facts", "INSERT"),
        ("ops.consumer_offsets", "UPDATE"),
        ("public.orders", "SELECT"),
    }
    for table, privilege in may:
        assert await worker.fetchval("SELECT has_table_privilege($1, $2)", table, privilege), (
            f"bv_worker lacks {privilege} on {table}: the pipeline would fail"
        )


DEBEZIUM_MUST_NOT = [
    "INSERT INTO public.categories (name) VALUES ('x')",
    "UPDATE public.customers SET email = 'x@example.com'",
    "DELETE FROM public.orders",
    "TRUNCATE public.payments",
    "SELECT * FROM public.orders_audit",  # not a captured table
    "SELECT * FROM bronze.orders",
    "SELECT * FROM silver.customers",
    "SELECT * FROM ops.consumer_offsets",
    "CREATE TABLE public.debezium_made (id int)",
    "CREATE ROLE debezium_made",
    "CREATE DATABASE debezium_made",
    "ALTER ROLE debezium SUPERUSER",
    "SELECT pg_read_file('/etc/hostname')",
]


@pytest.mark.parametrize("statement", DEBEZIUM_MUST_NOT)
async def test_the_debezium_role_is_refused_beyond_reading_captured_tables(
    debezium: asyncpg.Connection, statement: str
) -> None:
    assert await refused(debezium, statement), f"debezium may run: {statement}"


async def test_the_debezium_role_reads_every_captured_table_and_may_replicate(
    settings: Settings, debezium: asyncpg.Connection
) -> None:
    for table in settings.connector.tables:
        await debezium.fetch(f"SELECT * FROM {table} LIMIT 1")
    assert await debezium.fetchval(
        "SELECT rolreplication FROM pg_roles WHERE rolname = current_user"
    )


async def test_no_login_a_running_process_uses_is_privileged(
    settings: Settings, debezium: asyncpg.Connection
) -> None:
    pg = settings.postgres
    logins = [pg.worker_user, pg.debezium_user, settings.backup.replication_user]
    rows = await debezium.fetch(
        "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls "
        "FROM pg_roles WHERE rolname = ANY($1::text[])",
        logins,
    )
    assert {r["rolname"] for r in rows} >= {pg.worker_user, pg.debezium_user}
    for row in rows:
        assert not any(row[flag] for flag in ("rolsuper", "rolcreaterole", "rolcreatedb")), row
        assert not row["rolbypassrls"], row
    assert pg.admin_user not in logins
    assert oltp_connector_spec(settings).user == pg.debezium_user


async def test_the_cache_loaders_log_in_as_the_worker_role(
    settings: Settings, database: str
) -> None:
    admin = await connect(settings.postgres, database)
    source = PostgresSource(settings.postgres, database, max_size=1)
    await source.start()
    try:
        logins = await admin.fetch(
            "SELECT DISTINCT usename FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            database,
        )
    finally:
        await source.stop()
        await admin.close()
    assert [r["usename"] for r in logins] == [settings.postgres.worker_user]


async def test_no_role_the_settings_name_is_a_superuser(settings: Settings, database: str) -> None:
    pg = settings.postgres
    named = [pg.admin_user, pg.worker_user, pg.debezium_user, settings.backup.replication_user]
    admin = await connect(pg, database)
    try:
        rows = await admin.fetch(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles "
            "WHERE rolname = ANY($1::text[])",
            named,
        )
        me = await admin.fetchrow(
            "SELECT current_user AS login, (SELECT rolsuper FROM pg_roles "
            "WHERE rolname = current_user) AS superuser, "
            "(SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1) AS db_owner, "
            "(SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'public.orders'::regclass)"
            " AS orders_owner",
            database,
        )
    finally:
        await admin.close()
    assert {r["rolname"] for r in rows} == set(named)  # the bootstrap made every one of them
    assert [r["rolname"] for r in rows if r["rolsuper"] or r["rolbypassrls"]] == []
    admin_row = next(r for r in rows if r["rolname"] == pg.admin_user)
    assert admin_row["rolcreatedb"]
    assert admin_row["rolcreaterole"]
    assert me["login"] == pg.admin_user
    assert me["superuser"] is False
    assert me["db_owner"] == me["orders_owner"] == pg.admin_user  # it owns what it migrated


async def test_the_worker_holds_no_create_on_gold_after_the_migration_that_needed_it(
    worker: asyncpg.Connection,
) -> None:
    # Warehouse 0004 gave gold.daily_sales to the worker inside a transaction-long grant.
    assert await worker.fetchval("SELECT has_schema_privilege('gold', 'CREATE')") is False
    assert await refused(worker, "CREATE TABLE gold.worker_made (id int)")
    owner = await worker.fetchval(
        "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'gold.daily_sales'::regclass"
    )
    assert owner == await worker.fetchval("SELECT current_user")


# -- silver evolves only through ops.evolve_silver_column (decision 0021) ----------------------
EVOLVE = "SELECT ops.evolve_silver_column($1, $2, $3)"
TYPE = (
    "SELECT data_type, numeric_precision, numeric_scale FROM information_schema.columns "
    "WHERE table_schema = 'silver' AND table_name = $1 AND column_name = $2"
)


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
    # A second worker that read the old types asks again: already held, nothing to do (it
    # raised "bigint -> bigint is not a lossless widening" and paused the table before 0012).
    await worker.execute(EVOLVE, "order_items", "unit_price", "numeric(14, 3)")
    await worker.execute(EVOLVE, "order_items", "quantity", "bigint")
    await worker.execute(EVOLVE, "orders", "gift_note", "text")
    assert tuple(await worker.fetchrow(TYPE, "order_items", "unit_price")) == ("numeric", 14, 3)


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


# -- gold follows a mapped column only through ops.evolve_gold_column (decision 0021) --------
async def test_gold_takes_a_new_column_only_through_its_function(
    worker: asyncpg.Connection,
) -> None:
    gold = "SELECT ops.evolve_gold_column($1, $2, $3)"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # the shared checks: not directly
        await worker.execute("SELECT ops.evolve_column('gold', 'order_facts', 'x', 'text')")
    for table, column in (("order_facts", "status"), ("daily_sales", "x")):
        with pytest.raises(asyncpg.RaiseError):
            await worker.execute(gold, table, column, "text")
    await worker.execute(gold, "order_facts", "gift_note", "varchar(20)")
    await worker.execute(gold, "order_facts", "gift_note", "text")  # a lossless widening
    with pytest.raises(asyncpg.RaiseError):
        await worker.execute(gold, "order_facts", "gift_note", "integer")
    kind = await worker.fetchval(
        "SELECT data_type FROM information_schema.columns WHERE table_schema = 'gold' "
        "AND table_name = 'order_facts' AND column_name = 'gift_note'"
    )
    assert kind == "text"
