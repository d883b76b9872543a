"""The demo's analytics checks: gold and the Redis feature store against SQL over the OLTP tables.

The expectations are the chaos oracle's (``chaos.expectations``: plain SQL over ``public.*``,
written apart from ``tables/``), so the demo judges the pipeline by the same independent
recomputation the fault tests use. Hourly windows older than the analytics' retention are
not in gold by design (their changes are late events): only windows within retention of now
are compared, and the orders beyond it are counted so the screen can say so.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg
import redis.asyncio as redis_async

from chaos.expectations import FEATURE_COLUMNS, expected_features, expected_hourly
from chaos.oracle import feature_hash_matches
from config.settings import Settings
from sinks.postgres.connection import connect

WindowKey = tuple[datetime, str]  # window start, currency
Hourly = tuple[Decimal, int, Decimal]  # revenue, order count, average order value

#: Orders whose hourly window ended more than the retention before now (not in gold by design).
BEYOND_RETENTION = """
SELECT count(*) FROM public.orders
WHERE status IN ('CONFIRMED', 'SHIPPED', 'DELIVERED') AND deleted_at IS NULL
  AND date_bin($1::interval, created_at, timestamptz '1970-01-01 00:00+00') + $1::interval
      + $2::interval <= $3::timestamptz
"""


@dataclass(frozen=True)
class Mismatch:
    """One value the pipeline wrote that differs from the recomputation."""

    table: str
    key: str
    detail: str

    def __str__(self) -> str:
        return f"{self.table} {self.key}: {self.detail}"


@dataclass(frozen=True)
class BusyWindow:
    window_start: datetime
    currency: str
    revenue: Decimal
    order_count: int


@dataclass(frozen=True)
class CustomerLine:
    customer_id: int
    values: tuple[object, ...]  # FEATURE_COLUMNS, as in gold


@dataclass
class AnalyticsCheck:
    """What the demo shows of the analytics, and every difference found."""

    windows_compared: int = 0
    orders_beyond_retention: int = 0
    busiest: list[BusyWindow] = field(default_factory=list)
    totals: dict[str, tuple[Decimal, int]] = field(default_factory=dict)
    customers_compared: int = 0
    customers: list[CustomerLine] = field(default_factory=list)
    redis_hashes: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.windows_compared > 0 and self.customers_compared > 0


def compare_hourly(
    expected: dict[WindowKey, Hourly], gold: dict[WindowKey, Hourly]
) -> list[Mismatch]:
    """Windows whose gold row differs from the recomputation, to the cent.

    A gold window the source does not have must have been retracted to zero orders.
    """
    found = []
    for key in sorted(expected.keys() | gold.keys()):
        want, got = expected.get(key), gold.get(key)
        if want is None and got is not None and got[1] == 0 and got[0] == 0:
            continue  # retracted to zero: the right state of a window that emptied
        if want != got:
            found.append(
                Mismatch(
                    "gold.hourly_revenue",
                    f"window {key[0].isoformat()} {key[1]}",
                    f"gold {_hourly_text(got)} != SQL {_hourly_text(want)}",
                )
            )
    return found


def currency_totals(rows: dict[WindowKey, Hourly]) -> dict[str, tuple[Decimal, int]]:
    """Revenue and orders per currency over ``rows``."""
    totals: dict[str, tuple[Decimal, int]] = defaultdict(lambda: (Decimal(0), 0))
    for (_, currency), (revenue, count, _) in rows.items():
        total, orders = totals[currency]
        totals[currency] = (total + revenue, orders + count)
    return dict(sorted(totals.items()))


def busiest_windows(rows: dict[WindowKey, Hourly], per_currency: int) -> list[BusyWindow]:
    """The ``per_currency`` highest-revenue windows of each currency (ties: earliest first)."""
    by_currency: dict[str, list[BusyWindow]] = defaultdict(list)
    for (start, currency), (revenue, count, _) in rows.items():
        by_currency[currency].append(BusyWindow(start, currency, revenue, count))
    picked = []
    for currency in sorted(by_currency):
        ranked = sorted(by_currency[currency], key=lambda w: (-w.revenue, w.window_start))
        picked += ranked[:per_currency]
    return picked


def compare_features(
    expected: dict[int, tuple[object, ...]], gold: dict[int, tuple[object, ...]]
) -> list[Mismatch]:
    """Customers whose gold features differ from the recomputation; a customer the source
    no longer counts must have none left (lifetime order count 0)."""
    lifetime = FEATURE_COLUMNS.index("lifetime_order_count")
    found = []
    for customer in sorted(expected.keys() | gold.keys()):
        want, got = expected.get(customer), gold.get(customer)
        if want is None and got is not None and got[lifetime] == 0:
            continue
        if want != got:
            found.append(
                Mismatch("gold.customer_features", f"customer {customer}", f"{got} != SQL {want}")
            )
    return found


async def check_analytics(
    settings: Settings, now: datetime, *, per_currency: int = 2, customers: int = 5
) -> AnalyticsCheck:
    """Gold hourly revenue and customer features against SQL, then Redis against gold."""
    size, retention = settings.windows.hourly_revenue_size, settings.windows.retention
    result = AnalyticsCheck()
    connection = await connect(settings.postgres)
    try:
        expected = {
            k: v
            for k, v in (await expected_hourly(connection)).items()
            if _within(k[0], size, retention, now)
        }
        gold = {
            (r["window_start"], r["currency"]): (
                r["revenue"],
                r["order_count"],
                r["avg_order_value"],
            )
            for r in await connection.fetch(
                "SELECT window_start, currency, revenue, order_count, avg_order_value"
                " FROM gold.hourly_revenue"
            )
            if _within(r["window_start"], size, retention, now)
        }
        result.windows_compared = len(expected)
        result.mismatches += compare_hourly(expected, gold)
        result.totals = currency_totals(gold)
        expected_totals = currency_totals(expected)
        for currency in sorted(expected_totals.keys() | result.totals.keys()):
            if result.totals.get(currency) != expected_totals.get(currency):
                result.mismatches.append(
                    Mismatch(
                        "gold.hourly_revenue",
                        f"total {currency}",
                        f"gold {result.totals.get(currency)} != SQL "
                        f"{expected_totals.get(currency)}",
                    )
                )
        result.busiest = busiest_windows(gold, per_currency)
        result.orders_beyond_retention = int(
            await connection.fetchval(BEYOND_RETENTION, size, retention, now) or 0
        )
        rows = await connection.fetch("SELECT * FROM gold.customer_features")
        as_of = max((r["as_of"] for r in rows), default=None)
        stored = {r["customer_id"]: tuple(r[c] for c in FEATURE_COLUMNS) for r in rows}
        wanted = {} if as_of is None else await expected_features(connection, as_of)
        result.customers_compared = len(wanted)
        result.mismatches += compare_features(wanted, stored)
        lifetime = FEATURE_COLUMNS.index("lifetime_value")
        top = sorted(wanted, key=lambda c: (-(_decimal(wanted[c][lifetime])), c))[:customers]
        result.customers = [CustomerLine(c, stored.get(c, ())) for c in top]
        result.redis_hashes, redis_mismatches = await _redis_against_gold(settings, rows)
        result.mismatches += redis_mismatches
    finally:
        await connection.close()
    return result


async def _redis_against_gold(
    settings: Settings, rows: list[asyncpg.Record]
) -> tuple[int, list[Mismatch]]:
    """Each gold row has a Redis hash equal to it, and no hash is without a row."""
    r = settings.redis
    user, password = r.client_auth()
    client = redis_async.Redis(host=r.host, port=r.port, username=user, password=password, db=r.db)
    prefix = settings.features.redis_prefix
    found: list[Mismatch] = []
    try:
        names = {raw.decode() async for raw in client.scan_iter(match=f"{prefix}*", count=1000)}
        by_name = {f"{prefix}{row['customer_id']}": row for row in rows}
        for name in sorted(names | by_name.keys()):
            row = by_name.get(name)
            cached = {_text(k): _text(v) for k, v in (await client.hgetall(name)).items()}
            if row is None:
                found.append(Mismatch("redis", name, "a feature hash without a gold row"))
            elif not cached:
                found.append(Mismatch("redis", name, "missing (gold.customer_features has it)"))
            elif not feature_hash_matches(cached, row):
                found.append(Mismatch("redis", name, f"{cached} differs from gold"))
        return len(names), found
    finally:
        await client.aclose()


def _within(window_start: datetime, size: timedelta, retention: timedelta, now: datetime) -> bool:
    return window_start + size + retention > now


def _decimal(value: object) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _hourly_text(value: Hourly | None) -> str:
    if value is None:
        return "none"
    revenue, count, average = value
    return f"revenue {revenue} orders {count} avg {average}"
