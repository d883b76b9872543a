"""Gold upserts and the Redis feature store refuse older versions; a batch is one round trip."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from config.errors import TransientError
from config.settings import Settings
from sinks.postgres.analytics import (
    GoldUpsertSink,
    load_currency_rates,
    write_customer_features,
    write_hourly_revenue,
)
from sinks.postgres.connection import connect
from sinks.redis.feature_store import RedisFeatureStore
from tables.features import CustomerFeatures, FeatureValues
from tables.revenue import HourlyRevenueRow
from tests.integration.throwaway import throwaway_database

T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def database(settings: Settings) -> Iterator[str]:
    with throwaway_database(settings, "bv_gold_writers", oltp=False) as name:
        yield name


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RedisFeatureStore]:
    prefix = f"bv:test:{secrets.token_hex(4)}:features:customer:"
    async with RedisFeatureStore(settings.redis, prefix=prefix) as feature_store:
        yield feature_store
        await feature_store.delete_all()


def hourly(version: int, revenue: str) -> HourlyRevenueRow:
    amount = Decimal(revenue)
    return HourlyRevenueRow(T0, T0 + timedelta(hours=1), "EUR", amount, 1, amount, False, version)


def features(version: int, as_of: datetime, count: int = 1) -> CustomerFeatures:
    values = FeatureValues(count, Decimal("10.00"), None, "Books", count, Decimal("10.00"), "NEW")
    return CustomerFeatures(42, values, as_of, version, as_of)


async def test_gold_upserts_apply_only_newer_versions(settings: Settings, database: str) -> None:
    connection = await connect(settings.postgres, database)
    try:
        sink = GoldUpsertSink("gold.hourly_revenue", lambda: connection, write_hourly_revenue)
        assert await sink.write([hourly(2, "20.00"), hourly(1, "10.00")]) == 1  # one window
        assert await sink.write([hourly(1, "99.00")]) == 0  # older: refused
        row = await connection.fetchrow("SELECT revenue, version FROM gold.hourly_revenue")
        assert (row["revenue"], row["version"]) == (Decimal("20.00"), 2)
        assert await write_customer_features(connection, [features(3, T0, count=3)]) == 1
        later = [features(2, T0 + timedelta(hours=1))]
        assert await write_customer_features(connection, later) == 0  # older version
        stored = await connection.fetchrow("SELECT * FROM gold.customer_features")
        assert (stored["feature_version"], stored["lifetime_order_count"]) == (3, 3)
        assert stored["avg_order_value"] is None
        rates = await load_currency_rates(connection)
        assert rates.rate("EUR", T0.date()) == Decimal("1.08")
    finally:
        await connection.close()


async def test_a_gold_sink_on_a_lost_connection_raises_a_transient_error(
    settings: Settings, database: str
) -> None:
    connection = await connect(settings.postgres, database)
    connection.terminate()
    sink = GoldUpsertSink("gold.hourly_revenue", lambda: connection, write_hourly_revenue)
    with pytest.raises(TransientError, match=r"gold\.hourly_revenue"):
        await sink.write([hourly(5, "50.00")])


async def test_redis_refuses_an_older_as_of_and_pipelines_a_batch(
    store: RedisFeatureStore,
) -> None:
    before = store.round_trips
    assert await store.compare_and_set([features(2, T0 + timedelta(minutes=1), count=2)]) == [True]
    assert await store.compare_and_set([features(1, T0)]) == [False]  # older _ts refused
    assert await store.compare_and_set([features(2, T0 + timedelta(minutes=1))]) == [
        False
    ]  # replay
    stored = await store.read(42)
    assert stored["lifetime_order_count"] == "2"
    assert stored["_version"] == "2"
    assert stored["_ts"] == str(int((T0 + timedelta(minutes=1)).timestamp() * 1000))
    assert stored["avg_order_value"] == ""
    many = [CustomerFeatures(n, features(1, T0).values, T0, 1, T0) for n in range(100, 150)]
    assert all(await store.compare_and_set(many))
    assert store.round_trips - before == 4  # one per write call, 50 customers in one
    assert await store.write([features(3, T0 + timedelta(minutes=2)), features(1, T0)]) == 1
