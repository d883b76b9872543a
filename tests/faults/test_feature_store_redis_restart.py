"""The feature store keeps writing after Redis restarted and forgot its compare-and-set script.

Found by the chaos run: redis-py reports a forgotten script as ``NoScriptError`` whose text
lacks "NOSCRIPT", the store re-raised it, and the analytics worker exited (I7).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from config.settings import Settings
from sinks.redis.feature_store import RedisFeatureStore
from tables.features import CustomerFeatures, FeatureValues
from tests.faults.own_redis import OwnRedis

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def _features(version: int) -> CustomerFeatures:
    values = FeatureValues(
        1, Decimal("10.00"), Decimal("10.00"), "Books", version, Decimal(1), "NEW"
    )
    moment = T0 + timedelta(minutes=version)
    return CustomerFeatures(7, values, moment, version, moment)


async def test_a_write_after_a_redis_restart_reloads_the_script(
    settings: Settings, own_redis: OwnRedis
) -> None:
    redis = settings.redis.model_copy(update={"port": own_redis.port, "password": SecretStr("")})
    async with RedisFeatureStore(redis, prefix="bv:test:features:") as store:
        assert await store.compare_and_set([_features(1)]) == [True]
        own_redis.stop()
        own_redis.start()  # no persistence: the script and the hash are gone
        assert await store.compare_and_set([_features(2)]) == [True]
        assert (await store.read(7))["lifetime_order_count"] == "2"
