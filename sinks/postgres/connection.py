"""One way to open a PostgreSQL connection from the settings, with errors that say what to do."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from config.errors import ConfigurationError, TransientError
from config.settings import PostgresSettings

T = TypeVar("T")


class DatabaseUnavailableError(TransientError):
    """PostgreSQL could not be reached: retry with backoff, never drop the work."""


#: What a lost or refused connection raises: retry with backoff on a new connection.
DB_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    # "cannot switch to state ...; another operation is in progress": a connection broken
    # mid-operation by a server restart (seen in the chaos soak); a new connection cures it.
    asyncpg.InternalClientError,
    # A deadlock or serialization failure rolled the whole transaction back: PostgreSQL
    # asks for a retry. Two write lanes (or two workers' quality sweeps) can meet on the
    # same rows; a batch that met one is written again, not the end of the worker.
    asyncpg.TransactionRollbackError,
    TransientError,
)


async def connect(
    pg: PostgresSettings,
    database: str | None = None,
    *,
    user: str | None = None,
    password: str | None = None,
    command_timeout: float | None = None,
) -> asyncpg.Connection:
    """A connection to ``database`` (default: the configured one), as admin unless ``user``;
    ``command_timeout`` bounds each statement (a ``TimeoutError``, retried by callers)."""
    target = database or pg.database
    login = user or pg.admin_user
    try:
        return await asyncpg.connect(
            host=pg.host,
            port=pg.port,
            user=login,
            password=pg.admin_password.get_secret_value() if password is None else password,
            database=target,
            timeout=pg.connect_timeout_s,
            command_timeout=command_timeout,
        )
    except asyncpg.InvalidPasswordError as exc:
        raise ConfigurationError(
            f"PostgreSQL at {pg.host}:{pg.port} refused the password of {login}: check "
            "BV_POSTGRES__* passwords against the cluster (generated ones live in the state folder)"
        ) from exc
    except asyncpg.InvalidAuthorizationSpecificationError as exc:
        raise ConfigurationError(
            f"PostgreSQL at {pg.host}:{pg.port} refused the login {login} ({exc}); the stack's "
            "roles are made by `bitvelocity stack up`, and a cluster from before "
            "docs/decisions/0016 has no bv_admin: `stack up` says how to recreate it"
        ) from exc
    except asyncpg.InvalidCatalogNameError as exc:
        raise ConfigurationError(
            f"database {target} does not exist on {pg.host}:{pg.port}; run `bitvelocity migrate`"
        ) from exc
    except (OSError, TimeoutError, asyncpg.CannotConnectNowError) as exc:
        raise DatabaseUnavailableError(
            f"PostgreSQL at {pg.host}:{pg.port} is unreachable ({type(exc).__name__}: {exc}); "
            "is it running? (`bitvelocity stack status`)"
        ) from exc


async def ensure_database(pg: PostgresSettings, database: str) -> bool:
    """Create ``database`` when missing; True when it was created."""
    connection = await connect(pg, "postgres")
    try:
        if await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            return False
        quoted = await connection.fetchval("SELECT quote_ident($1)", database)
        await connection.execute(f"CREATE DATABASE {quoted}")
        return True
    finally:
        await connection.close()


def run_with_connection(
    pg: PostgresSettings, database: str | None, work: Callable[[asyncpg.Connection], Awaitable[T]]
) -> T:
    """Open a connection, run ``work`` on it, close it: for one-shot CLI commands."""

    async def main() -> T:
        connection = await connect(pg, database)
        try:
            return await work(connection)
        finally:
            await connection.close()

    return asyncio.run(main())
