"""Faust web views over the analytics state: hourly revenue, customer features, health.

``GET /revenue/hourly?from=&to=&currency=``, ``GET /features/customers/{id}``, ``GET /health``.
Every answer carries ``as_of`` (when it was computed) and ``watermark`` (event time up to
which windows are complete, null until every partition has spoken). Money is a decimal
string. With ``BV_WEB__TOKEN`` set, a request without ``Authorization: Bearer <token>``
gets 401 (constant-time comparison). The web server binds to ``settings.web.host``
(loopback by default, see ``streams.app``). The answers are pure functions of the core.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import faust
from faust.web import Request, Response, View
from pydantic import SecretStr

from agents.analytics import Clock, utc_now
from observability.web_auth import authorized
from tables.analytics import AnalyticsCore
from tables.revenue import row_of


class BadQueryError(ValueError):
    """A query parameter is malformed; the view answers 400 with this message."""


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _money(amount: Decimal | None) -> str | None:
    return None if amount is None else format(amount, "f")


def _instant(query: Mapping[str, str], name: str) -> datetime | None:
    text = query.get(name)
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadQueryError(f"{name}={text!r} is not an ISO 8601 instant") from exc
    if moment.tzinfo is None:
        raise BadQueryError(f"{name}={text!r} has no timezone; add Z or +00:00")
    return moment


def _stamp(core: AnalyticsCore, now: datetime) -> dict[str, Any]:
    return {"as_of": _iso(now), "watermark": _iso(core.watermarks.current())}


def hourly_revenue_answer(
    core: AnalyticsCore, query: Mapping[str, str], now: datetime
) -> dict[str, Any]:
    """Windows with ``from <= window_start < to`` (either bound optional), by currency."""
    since, until = _instant(query, "from"), _instant(query, "to")
    currency = query.get("currency")
    rows = [
        row_of(totals)
        for totals in core.state.windows.values()
        if (since is None or totals.window_start >= since)
        and (until is None or totals.window_start < until)
        and (not currency or totals.currency == currency)
    ]
    rows.sort(key=lambda r: (r.window_start, r.currency))
    return {
        **_stamp(core, now),
        "windows": [
            {
                "window_start": _iso(r.window_start),
                "window_end": _iso(r.window_end),
                "currency": r.currency,
                "revenue": _money(r.revenue),
                "order_count": r.order_count,
                "avg_order_value": _money(r.avg_order_value),
                "is_final": r.is_final,
                "version": r.version,
            }
            for r in rows
        ],
    }


def customer_features_answer(
    core: AnalyticsCore, customer_id: int, now: datetime
) -> dict[str, Any] | None:
    features = core.state.features.get(customer_id)
    if features is None:
        return None
    v = features.values
    return {
        **_stamp(core, now),
        "customer_id": customer_id,
        "order_count_last_30_days": v.order_count_last_30_days,
        "total_spent_last_30_days": _money(v.total_spent_last_30_days),
        "avg_order_value": _money(v.avg_order_value),
        "preferred_category": v.preferred_category,
        "lifetime_order_count": v.lifetime_order_count,
        "lifetime_value": _money(v.lifetime_value),
        "lifetime_segment": v.lifetime_segment,
        "features_updated_at": _iso(features.features_updated_at),
        "feature_version": features.feature_version,
        "features_as_of": _iso(features.as_of),
    }


def health_answer(core: AnalyticsCore, now: datetime) -> dict[str, Any]:
    return {**_stamp(core, now), "status": "ok", "windows": len(core.state.windows)}


def register_views(
    app: faust.App, core: AnalyticsCore, *, token: SecretStr | None, clock: Clock = utc_now
) -> dict[str, type[View]]:
    """Add the three views to ``app``; returns them by path."""

    class Guarded(View):
        async def dispatch(self, request: Any) -> Any:
            if not authorized(request.headers.get("Authorization"), token):
                return self.error(401, "missing or wrong bearer token")
            try:
                return await super().dispatch(request)
            except BadQueryError as exc:
                return self.error(400, str(exc))

    @app.page("/revenue/hourly", base=Guarded, name="analytics-revenue-hourly")
    class HourlyRevenueView(Guarded):
        async def get(self, request: Request) -> Response:
            return self.json(hourly_revenue_answer(core, request.query, clock()))

    @app.page("/features/customers/{customer_id}", base=Guarded, name="analytics-features")
    class CustomerFeaturesView(Guarded):
        async def get(self, request: Request, customer_id: str) -> Response:
            if not customer_id.isdigit():
                return self.error(400, f"customer id {customer_id!r} is not a number")
            answer = customer_features_answer(core, int(customer_id), clock())
            if answer is None:
                return self.error(404, f"no features for customer {customer_id}")
            return self.json(answer)

    @app.page("/health", base=Guarded, name="analytics-health")
    class HealthView(Guarded):
        async def get(self, request: Request) -> Response:
            return self.json(health_answer(core, clock()))

    return {
        "/revenue/hourly": HourlyRevenueView,
        "/features/customers/{customer_id}": CustomerFeaturesView,
        "/health": HealthView,
    }
