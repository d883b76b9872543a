"""HTTP views over the analytics state: hourly revenue, customer features, health.

``GET /revenue/hourly?from=&to=&currency=``, ``GET /features/customers/{id}``, ``GET /health``.
Every answer carries ``as_of`` (when it was computed) and ``watermark`` (event time up to
which windows are complete, null until every partition has spoken). Money is a decimal
string. With ``BV_WEB__TOKEN`` set, a request without ``Authorization: Bearer <token>``
gets 401 (constant-time comparison). The server binds to ``BV_WEB__HOST``:``BV_WEB__PORT``
(loopback by default). It runs on the analytics worker's event loop, which owns all the
state (one worker owns every partition, docs/decisions/0007), so no request is forwarded.
The answers are pure functions of the core; aiohttp only carries them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiohttp import web
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


def health_answer(
    core: AnalyticsCore, now: datetime, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {
        **_stamp(core, now),
        "status": "ok",
        "windows": len(core.state.windows),
        # True while flushes still recompute customers (after a replay or a restart, at
        # most emit_max_customers a flush): "caught up" means positions and this.
        "features_pending": core.features.pending(),
        # Windows beyond retention not forgotten yet (a tick forgets a bounded number).
        "revenue_pending": core.revenue.forgetting(),
        **(extra or {}),
    }


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def analytics_web_app(
    core_of: Callable[[], AnalyticsCore | None],
    *,
    token: SecretStr | None,
    clock: Clock = utc_now,
    health: Callable[[], Mapping[str, Any]] | None = None,
) -> web.Application:
    """The three views; ``core_of`` gives the running core (None: still starting, 503)."""

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if not authorized(request.headers.get("Authorization"), token):
            return _error(401, "missing or wrong bearer token")
        if core_of() is None:
            return _error(503, "analytics starting: state not restored yet")
        try:
            response: web.StreamResponse = await handler(request)
        except BadQueryError as exc:
            return _error(400, str(exc))
        return response

    def core() -> AnalyticsCore:
        running = core_of()
        assert running is not None  # the guard answered 503 otherwise
        return running

    async def hourly(request: web.Request) -> web.Response:
        return web.json_response(hourly_revenue_answer(core(), request.query, clock()))

    async def features(request: web.Request) -> web.Response:
        customer_id = request.match_info["customer_id"]
        if not customer_id.isdigit():
            return _error(400, f"customer id {customer_id!r} is not a number")
        answer = customer_features_answer(core(), int(customer_id), clock())
        if answer is None:
            return _error(404, f"no features for customer {customer_id}")
        return web.json_response(answer)

    async def healthy(_: web.Request) -> web.Response:
        return web.json_response(health_answer(core(), clock(), health() if health else None))

    app = web.Application(middlewares=[guard])
    app.router.add_get("/revenue/hourly", hourly)
    app.router.add_get("/features/customers/{customer_id}", features)
    app.router.add_get("/health", healthy)
    return app


class AnalyticsWebServer:
    """Serves ``app`` on ``host:port`` (port 0: an ephemeral one, see ``port`` after start)."""

    def __init__(self, app: web.Application, *, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])  # the bound one, also when asked for 0

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
