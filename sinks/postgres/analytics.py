"""Version-guarded upserts of ``gold.hourly_revenue`` and ``gold.customer_features``.

One statement per batch (arrays through ``unnest``), applied only where the stored version
is older, so replays and re-publications after a restart never move a row backwards.
Also reads ``ref.currency_rates`` for the features' USD conversion. ``GoldUpsertSink`` puts
either upsert behind the ``BatchSink`` contract (``sinks/contract.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Generic, TypeVar

import asyncpg

from sinks.contract import SinkLifecycle
from sinks.postgres.connection import DB_ERRORS, DatabaseUnavailableError
from tables.features import CurrencyRates, CustomerFeatures, FeatureValues
from tables.revenue import HourlyRevenueRow, WindowTotals, window_key

UPSERT_HOURLY = """
INSERT INTO gold.hourly_revenue AS g
    (window_start, currency, revenue, order_count, avg_order_value, is_final, version, updated_at)
SELECT w, c, r, n, a, f, v, now()
FROM unnest($1::timestamptz[], $2::text[], $3::numeric[], $4::int[], $5::numeric[],
            $6::bool[], $7::bigint[]) AS t(w, c, r, n, a, f, v)
ON CONFLICT (window_start, currency) DO UPDATE SET
    revenue = EXCLUDED.revenue, order_count = EXCLUDED.order_count,
    avg_order_value = EXCLUDED.avg_order_value, is_final = EXCLUDED.is_final,
    version = EXCLUDED.version, updated_at = now()
WHERE g.version < EXCLUDED.version
"""

UPSERT_FEATURES = """
INSERT INTO gold.customer_features AS g
    (customer_id, order_count_last_30_days, total_spent_last_30_days, avg_order_value,
     preferred_category, lifetime_order_count, lifetime_value, lifetime_segment,
     features_updated_at, feature_version, as_of)
SELECT * FROM unnest($1::bigint[], $2::int[], $3::numeric[], $4::numeric[], $5::text[],
                     $6::int[], $7::numeric[], $8::text[], $9::timestamptz[], $10::bigint[],
                     $11::timestamptz[])
ON CONFLICT (customer_id) DO UPDATE SET
    order_count_last_30_days = EXCLUDED.order_count_last_30_days,
    total_spent_last_30_days = EXCLUDED.total_spent_last_30_days,
    avg_order_value = EXCLUDED.avg_order_value,
    preferred_category = EXCLUDED.preferred_category,
    lifetime_order_count = EXCLUDED.lifetime_order_count,
    lifetime_value = EXCLUDED.lifetime_value,
    lifetime_segment = EXCLUDED.lifetime_segment,
    features_updated_at = EXCLUDED.features_updated_at,
    feature_version = EXCLUDED.feature_version,
    as_of = EXCLUDED.as_of
WHERE g.feature_version < EXCLUDED.feature_version
"""


def newest_windows(rows: Iterable[HourlyRevenueRow]) -> list[HourlyRevenueRow]:
    """One row per window, its highest version (an upsert cannot touch a row twice)."""
    newest: dict[tuple[object, str], HourlyRevenueRow] = {}
    for row in rows:
        key = (row.window_start, row.currency)
        kept = newest.get(key)
        if kept is None or kept.version < row.version:
            newest[key] = row
    return list(newest.values())


def newest_features(rows: Iterable[CustomerFeatures]) -> list[CustomerFeatures]:
    newest: dict[int, CustomerFeatures] = {}
    for row in rows:
        kept = newest.get(row.customer_id)
        if kept is None or kept.feature_version < row.feature_version:
            newest[row.customer_id] = row
    return list(newest.values())


def _rows_changed(status: str) -> int:
    """Rows an ``INSERT ... ON CONFLICT`` touched, from its status (``INSERT 0 <n>``)."""
    return int(status.rsplit(" ", 1)[-1])


async def write_hourly_revenue(
    connection: asyncpg.Connection, rows: Iterable[HourlyRevenueRow]
) -> int:
    """Upsert each window's newest row; returns how many rows changed (older versions are
    refused by the ``WHERE``)."""
    batch = newest_windows(rows)
    if not batch:
        return 0
    status = await connection.execute(
        UPSERT_HOURLY,
        [r.window_start for r in batch],
        [r.currency for r in batch],
        [r.revenue for r in batch],
        [r.order_count for r in batch],
        [r.avg_order_value for r in batch],
        [r.is_final for r in batch],
        [r.version for r in batch],
    )
    return _rows_changed(status)


async def write_customer_features(
    connection: asyncpg.Connection, rows: Iterable[CustomerFeatures]
) -> int:
    """Upsert each customer's newest features; returns how many rows changed."""
    batch = newest_features(rows)
    if not batch:
        return 0
    status = await connection.execute(
        UPSERT_FEATURES,
        [f.customer_id for f in batch],
        [f.values.order_count_last_30_days for f in batch],
        [f.values.total_spent_last_30_days for f in batch],
        [f.values.avg_order_value for f in batch],
        [f.values.preferred_category for f in batch],
        [f.values.lifetime_order_count for f in batch],
        [f.values.lifetime_value for f in batch],
        [f.values.lifetime_segment for f in batch],
        [f.features_updated_at for f in batch],
        [f.feature_version for f in batch],
        [f.as_of for f in batch],
    )
    return _rows_changed(status)


RowT = TypeVar("RowT")


class GoldUpsertSink(SinkLifecycle, Generic[RowT]):
    """``BatchSink`` of one gold table's rows, over a connection its owner holds.

    ``connection`` returns the owner's current connection (``AnalyticsSinks`` replaces it
    after an outage and wraps both tables in one transaction), so ``start``/``stop`` have
    nothing of their own to open or close. A lost connection is ``DatabaseUnavailableError``.
    """

    def __init__(
        self,
        table: str,
        connection: Callable[[], asyncpg.Connection],
        upsert: Callable[[asyncpg.Connection, Sequence[RowT]], Awaitable[int]],
    ) -> None:
        self.table = table
        self._connection = connection
        self._upsert = upsert

    async def start(self) -> None:
        """Nothing to open: the connection belongs to the owner."""

    async def stop(self) -> None:
        """Nothing to close: the connection belongs to the owner."""

    async def write(self, batch: Sequence[RowT]) -> int:
        try:
            return await self._upsert(self._connection(), batch)
        except DB_ERRORS as exc:
            raise DatabaseUnavailableError(
                f"upserting {len(batch)} rows into {self.table} failed ({exc!r}); "
                "the batch is written again on a new connection"
            ) from exc


async def load_currency_rates(connection: asyncpg.Connection) -> CurrencyRates:
    rows = await connection.fetch(
        "SELECT currency, valid_from, rate_to_usd FROM ref.currency_rates"
    )
    return CurrencyRates((r["currency"], r["valid_from"], r["rate_to_usd"]) for r in rows)


async def read_gold_windows(connection: asyncpg.Connection) -> dict[str, WindowTotals]:
    """Every stored hourly row, keyed as the analytics state keys windows."""
    rows = await connection.fetch(
        "SELECT window_start, currency, revenue, order_count, is_final, version"
        " FROM gold.hourly_revenue"
    )
    return {
        window_key(r["window_start"], r["currency"]): WindowTotals(
            r["window_start"],
            r["window_start"],  # the end is not compared
            r["currency"],
            r["revenue"],
            r["order_count"],
            r["version"],
            r["is_final"],
        )
        for r in rows
    }


async def gold_feature_chunks(
    connection: asyncpg.Connection, size: int = 5_000
) -> AsyncIterator[list[CustomerFeatures]]:
    """Every stored customer's features, ``size`` at a time (a cursor: reading 200,000
    customers at once held hundreds of MB in the worker, issue 23)."""
    async with connection.transaction(readonly=True):
        cursor = await connection.cursor("SELECT * FROM gold.customer_features")
        while rows := await cursor.fetch(size):
            yield [_features_of(r) for r in rows]


def _features_of(r: asyncpg.Record) -> CustomerFeatures:
    return CustomerFeatures(
        r["customer_id"],
        FeatureValues(
            r["order_count_last_30_days"],
            r["total_spent_last_30_days"],
            r["avg_order_value"],
            r["preferred_category"],
            r["lifetime_order_count"],
            r["lifetime_value"],
            r["lifetime_segment"],
        ),
        r["features_updated_at"],
        r["feature_version"],
        r["as_of"],
    )
