"""Loaders: product, category and customer profile rows read from the OLTP database.

The caches front the source of truth (``public.*``), not silver: an eviction follows the
source commit, so a load after it always sees the new row; silver could still lag. Rows
become JSON-ready dicts (money as decimal strings, times ISO 8601 UTC); a missing or
soft-deleted row is None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import asyncpg

from cache.codec import CacheValue
from cache.keys import CacheKey, CacheKind
from config.errors import ConfigurationError
from config.lifecycle import AsyncStartStop
from config.settings import PostgresSettings
from sinks.postgres.connection import DatabaseUnavailableError

#: One statement per kind; ``$1`` is a bigint array, the first column the id.
QUERIES: Mapping[CacheKind, str] = {
    CacheKind.PRODUCT: (
        "SELECT product_id, sku, name, category_id, price, currency, version, updated_at "
        "FROM public.products WHERE product_id = ANY($1::bigint[]) AND deleted_at IS NULL"
    ),
    CacheKind.CATEGORY: (
        "SELECT c.category_id, c.name, c.parent_category_id, c.version, c.updated_at, "
        "(SELECT count(*) FROM public.products AS p "
        " WHERE p.category_id = c.category_id AND p.deleted_at IS NULL) AS product_count "
        "FROM public.categories AS c "
        "WHERE c.category_id = ANY($1::bigint[]) AND c.deleted_at IS NULL"
    ),
    CacheKind.CUSTOMER: (
        "SELECT customer_id, email, first_name, last_name, country, version, updated_at "
        "FROM public.customers WHERE customer_id = ANY($1::bigint[]) AND deleted_at IS NULL"
    ),
}
_DB_DOWN = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


class Source(Protocol):
    """Where misses are read from."""

    async def load_many(self, kind: CacheKind, ids: Sequence[int]) -> dict[int, CacheValue]: ...


def json_ready(row: Mapping[str, Any]) -> dict[str, Any]:
    """A record as JSON-safe values: Decimal -> str (exact), datetime -> ISO 8601."""
    ready: dict[str, Any] = {}
    for column, value in row.items():
        if isinstance(value, Decimal):
            ready[column] = str(value)
        elif isinstance(value, datetime):
            ready[column] = value.isoformat()
        else:
            ready[column] = value
    return ready


def by_id(rows: Iterable[Mapping[str, Any]], ids: Sequence[int]) -> dict[int, CacheValue]:
    """Every requested id -> its row, or None when the source has none."""
    found: dict[int, CacheValue] = {int(next(iter(r.values()))): json_ready(r) for r in rows}
    return {i: found.get(i) for i in ids}


async def load_one(source: Source, key: CacheKey) -> CacheValue:
    return (await source.load_many(key.kind, [key.entity_id]))[key.entity_id]


class PostgresSource(AsyncStartStop):
    """Loads through a small asyncpg pool; ``start()``/``stop()`` or ``async with``."""

    def __init__(self, pg: PostgresSettings, database: str | None = None, max_size: int = 4):
        self._pg = pg
        self._database = database or pg.database
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        pg = self._pg
        try:
            self._pool = await asyncpg.create_pool(
                host=pg.host,
                port=pg.port,
                # The pipeline's least-privilege login (reads the OLTP tables), never the admin.
                user=pg.worker_user,
                password=pg.worker_password.get_secret_value(),
                database=self._database,
                min_size=1,
                max_size=self._max_size,
                timeout=pg.connect_timeout_s,
                # Statements are prepared once per connection and reused (asyncpg's cache).
            )
        except (asyncpg.InvalidCatalogNameError, asyncpg.InvalidPasswordError) as exc:
            raise ConfigurationError(
                f"cache loaders: cannot open {self._database} on {pg.host}:{pg.port} ({exc}); "
                "check BV_POSTGRES__DATABASE and the passwords, or run `bitvelocity migrate`"
            ) from exc
        except _DB_DOWN as exc:
            raise DatabaseUnavailableError(
                f"cache loaders: PostgreSQL at {pg.host}:{pg.port}/{self._database} is "
                f"unreachable ({type(exc).__name__}: {exc}); is it running?"
            ) from exc

    async def stop(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def load_many(self, kind: CacheKind, ids: Sequence[int]) -> dict[int, CacheValue]:
        if self._pool is None:
            raise DatabaseUnavailableError("cache loaders are not started")
        try:
            rows = await self._pool.fetch(QUERIES[kind], list(ids))
        except _DB_DOWN as exc:
            raise DatabaseUnavailableError(
                f"cache loaders: reading {kind.value} {list(ids)[:5]} failed "
                f"({type(exc).__name__}: {exc}); retry later"
            ) from exc
        return by_id([dict(r) for r in rows], ids)

    async def query_ids(self, sql: str, *args: Any) -> list[int]:
        """The first column of ``sql`` as ints (ranking queries such as warming's)."""
        if self._pool is None:
            raise DatabaseUnavailableError("cache loaders are not started")
        try:
            return [int(r[0]) for r in await self._pool.fetch(sql, *args)]
        except _DB_DOWN as exc:
            raise DatabaseUnavailableError(
                f"cache loaders: ranking query failed ({type(exc).__name__}: {exc})"
            ) from exc
