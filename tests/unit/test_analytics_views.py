"""Web views answer from the analytics state with as_of and the watermark; 401 without token.

Served by aiohttp's test server on an ephemeral loopback port (real HTTP, no broker).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from config.settings import Settings
from streams.analytics_views import analytics_web_app
from tables.analytics import AnalyticsCore
from tables.features import CurrencyRates
from tables.orders import OrderRow

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
H9 = datetime(2026, 3, 10, 9, tzinfo=UTC)


def core_with_data() -> AnalyticsCore:
    rates = CurrencyRates([("EUR", date(2020, 1, 1), Decimal("1.10"))])
    core = AnalyticsCore(Settings(), rates)
    core.assign([0])
    core.watermarks.observe(0, datetime(2026, 3, 10, 11, tzinfo=UTC))
    for order_id, amount, status in ((1, "10.00", "CONFIRMED"), (2, "5.01", "SHIPPED")):
        row = OrderRow(order_id, 9, status, "EUR", Decimal(amount), H9)
        core.revenue.apply(order_id, row, order_id)
        core.features.apply_order(order_id, row)
    core.tick(NOW)
    return core


async def call(
    client: TestClient[Any, Any],
    path: str,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    response = await client.get(path, params=query or {}, headers=headers or {})
    return response.status, await response.json()


def served(token: SecretStr | None) -> TestClient[Any, Any]:
    core = core_with_data()
    return TestClient(TestServer(analytics_web_app(lambda: core, token=token, clock=lambda: NOW)))


async def test_views_answer_with_values_as_of_and_watermark() -> None:
    auth = {"Authorization": "Bearer s3cret"}
    async with served(SecretStr("s3cret")) as client:
        await check_answers(client, auth)


async def check_answers(client: TestClient[Any, Any], auth: dict[str, str]) -> None:
    status, body = await call(
        client,
        "/revenue/hourly",
        query={"from": "2026-03-10T00:00:00Z", "currency": "EUR"},
        headers=auth,
    )
    assert status == 200
    assert body["as_of"] == "2026-03-10T12:00:00+00:00"
    assert body["watermark"] == "2026-03-10T11:00:00+00:00"
    (window,) = body["windows"]
    assert (window["revenue"], window["order_count"], window["avg_order_value"]) == (
        "15.01",
        2,
        "7.51",  # 7.505 rounds half up
    )
    assert window["is_final"] is True  # 11:00 >= 10:00 + 5 min grace
    status, features = await call(client, "/features/customers/9", headers=auth)
    assert status == 200
    assert features["total_spent_last_30_days"] == "16.51"  # 11.00 + 5.51 (5.511 rounded)
    assert features["as_of"] == "2026-03-10T12:00:00+00:00"
    status, _ = await call(client, "/features/customers/404", headers=auth)
    assert status == 404
    status, health = await call(client, "/health", headers=auth)
    assert (status, health["status"]) == (200, "ok")
    assert health["watermark"] == "2026-03-10T11:00:00+00:00"
    assert health["features_pending"] is False  # the features asked above were emitted
    assert health["revenue_pending"] is False  # no window beyond retention is held


async def test_views_refuse_requests_without_the_token_and_bad_queries() -> None:
    async with served(SecretStr("s3cret")) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            status, _ = await call(client, "/health", headers=headers)
            assert status == 401
        status, body = await call(
            client,
            "/revenue/hourly",
            query={"from": "2026-03-10T00:00"},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert status == 400
        assert "timezone" in body["error"]


async def test_views_are_open_without_a_configured_token() -> None:
    async with served(None) as client:
        status, _ = await call(client, "/health")
        assert status == 200


async def test_views_answer_503_until_the_state_is_restored() -> None:
    app = analytics_web_app(lambda: None, token=None, clock=lambda: NOW)
    async with TestClient(TestServer(app)) as client:
        status, body = await call(client, "/health")
        assert status == 503
        assert "starting" in body["error"]
