"""Web views answer from the analytics state with as_of and the watermark; 401 without token."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from pydantic import SecretStr

from config.settings import Settings
from streams.analytics_views import register_views
from streams.app import create_app
from tables.analytics import AnalyticsCore
from tables.features import CurrencyRates
from tables.orders import OrderRow

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
H9 = datetime(2026, 3, 10, 9, tzinfo=UTC)


@dataclass
class FakeRequest:
    method: str = "GET"
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    match_info: dict[str, str] = field(default_factory=dict)


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


async def call(views: dict[str, Any], app: Any, path: str, request: FakeRequest) -> Any:
    response = await views[path](app, app.web)(request)
    return response.status, json.loads(response.body)


async def test_views_answer_with_values_as_of_and_watermark() -> None:
    app = create_app(Settings(), store="memory://")
    views = register_views(app, core_with_data(), token=SecretStr("s3cret"), clock=lambda: NOW)
    auth = {"Authorization": "Bearer s3cret"}
    status, body = await call(
        views,
        app,
        "/revenue/hourly",
        FakeRequest(query={"from": "2026-03-10T00:00:00Z", "currency": "EUR"}, headers=auth),
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
    status, features = await call(
        views,
        app,
        "/features/customers/{customer_id}",
        FakeRequest(headers=auth, match_info={"customer_id": "9"}),
    )
    assert status == 200
    assert features["total_spent_last_30_days"] == "16.51"  # 11.00 + 5.51 (5.511 rounded)
    assert features["as_of"] == "2026-03-10T12:00:00+00:00"
    status, _ = await call(
        views,
        app,
        "/features/customers/{customer_id}",
        FakeRequest(headers=auth, match_info={"customer_id": "404"}),
    )
    assert status == 404
    status, health = await call(views, app, "/health", FakeRequest(headers=auth))
    assert (status, health["status"]) == (200, "ok")
    assert health["watermark"] == "2026-03-10T11:00:00+00:00"


async def test_views_refuse_requests_without_the_token_and_bad_queries() -> None:
    app = create_app(Settings(), store="memory://")
    views = register_views(app, core_with_data(), token=SecretStr("s3cret"), clock=lambda: NOW)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        status, _ = await call(views, app, "/health", FakeRequest(headers=headers))
        assert status == 401
    status, body = await call(
        views,
        app,
        "/revenue/hourly",
        FakeRequest(query={"from": "2026-03-10T00:00"}, headers={"Authorization": "Bearer s3cret"}),
    )
    assert status == 400
    assert "timezone" in body["error"]


async def test_views_are_open_without_a_configured_token() -> None:
    app = create_app(Settings(), store="memory://")
    views = register_views(app, core_with_data(), token=None, clock=lambda: NOW)
    status, _ = await call(views, app, "/health", FakeRequest())
    assert status == 200
