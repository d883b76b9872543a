"""Expected analytics recomputed from the OLTP tables: the SQL half of the chaos oracle (I4).

Written independently of ``tables/``: plain SQL over ``public.*`` and ``ref.currency_rates``
at a given as-of time, with the definitions of DESIGN.md section 8. Ties on category name
compare in code-point order (``COLLATE "C"``), as Python's ``str`` does. The analytics
integration test (``tests/integration/analytics_oracle.py``) judges by the same queries.

Retention (docs/decisions/0020): a change to an order is late when its hour's end plus the
retention is not after the change's time in the source (the row's ``updated_at``; the
audit time of a hard delete). A window therefore holds each of its orders as they stood
before their window left retention: ``HOURLY_SETTLED`` rebuilds that state from the audit
trail (``public.orders_audit``, filled by trigger); for a window still within retention it
is the current state. ``LATE_CHANGES`` names every order with a late change, each of
which must be on ``late-events`` (a late hard delete excepted: its change carries no row,
so no window; the order was already reported, or is in gold).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

HOURLY = """
SELECT date_bin('1 hour', created_at, timestamptz '1970-01-01 00:00+00') AS window_start,
       trim(currency) AS currency, sum(total_amount) AS revenue, count(*)::int AS order_count,
       round(sum(total_amount) / count(*), 2) AS avg_order_value
FROM public.orders
WHERE status IN ('CONFIRMED', 'SHIPPED', 'DELIVERED') AND deleted_at IS NULL
GROUP BY 1, 2
"""

_CHANGES = """
WITH changes AS (
    SELECT a.order_id, a.audit_id, a.operation, a.new_data,
           CASE WHEN a.operation = 'DELETE' THEN a.changed_at
                ELSE (a.new_data ->> 'updated_at')::timestamptz END AS changed,
           date_bin($1::interval, (coalesce(a.new_data, a.old_data) ->> 'created_at')::timestamptz,
                    timestamptz '1970-01-01 00:00+00') AS window_start,
           trim(coalesce(a.new_data, a.old_data) ->> 'currency') AS currency
    FROM public.orders_audit a
)
"""

HOURLY_SETTLED = (
    _CHANGES
    + """, settled AS (
    SELECT DISTINCT ON (order_id) order_id, operation, new_data, window_start, currency
    FROM changes
    WHERE changed < window_start + $1::interval + $2::interval
    ORDER BY order_id, changed DESC, audit_id DESC
)
SELECT window_start, currency, sum((new_data ->> 'total_amount')::numeric) AS revenue,
       count(*)::int AS order_count,
       round(sum((new_data ->> 'total_amount')::numeric) / count(*), 2) AS avg_order_value
FROM settled
WHERE operation <> 'DELETE' AND new_data ->> 'status' IN ('CONFIRMED', 'SHIPPED', 'DELIVERED')
  AND new_data ->> 'deleted_at' IS NULL
GROUP BY 1, 2
"""
)

LATE_CHANGES = (
    _CHANGES
    + """
SELECT DISTINCT order_id, window_start, currency
FROM changes
WHERE operation <> 'DELETE' AND changed >= window_start + $1::interval + $2::interval
"""
)

FEATURES = """
WITH bearing AS (
    SELECT o.order_id, o.customer_id, o.created_at, o.total_amount,
           (SELECT r.rate_to_usd FROM ref.currency_rates r
            WHERE r.currency = o.currency
              AND r.valid_from <= (o.created_at AT TIME ZONE 'UTC')::date
            ORDER BY r.valid_from DESC LIMIT 1) AS rate
    FROM public.orders o
    WHERE o.status IN ('CONFIRMED', 'SHIPPED', 'DELIVERED') AND o.deleted_at IS NULL
), usd AS (
    SELECT *, round(total_amount * rate, 2) AS amount_usd,
           created_at > $1::timestamptz - interval '30 days' AS recent
    FROM bearing
), totals AS (
    SELECT customer_id,
           count(*) FILTER (WHERE recent)::int AS c30,
           coalesce(sum(amount_usd) FILTER (WHERE recent), 0) AS s30,
           count(*)::int AS lifetime_count, sum(amount_usd) AS lifetime_value
    FROM usd GROUP BY customer_id
), spend AS (
    SELECT u.customer_id, c.name, sum(i.quantity * i.unit_price * u.rate) AS amount,
           sum(i.quantity) AS items
    FROM usd u
    JOIN public.order_items i ON i.order_id = u.order_id AND i.deleted_at IS NULL
    JOIN public.products p ON p.product_id = i.product_id
    JOIN public.categories c ON c.category_id = p.category_id AND c.deleted_at IS NULL
    WHERE u.recent
    GROUP BY u.customer_id, c.name
), preferred AS (
    SELECT DISTINCT ON (customer_id) customer_id, name
    FROM spend ORDER BY customer_id, amount DESC, items DESC, name COLLATE "C"
)
SELECT t.customer_id, t.c30 AS order_count_last_30_days, t.s30 AS total_spent_last_30_days,
       CASE WHEN t.c30 > 0 THEN round(t.s30 / t.c30, 2) END AS avg_order_value,
       p.name AS preferred_category, t.lifetime_count AS lifetime_order_count,
       t.lifetime_value,
       CASE WHEN t.lifetime_count >= 20 AND t.lifetime_value >= 5000 THEN 'VIP'
            WHEN t.lifetime_count >= 10 THEN 'LOYAL'
            WHEN t.lifetime_count >= 3 THEN 'REGULAR'
            WHEN t.lifetime_count >= 1 THEN 'NEW'
            ELSE 'NONE' END AS lifetime_segment
FROM totals t LEFT JOIN preferred p USING (customer_id)
"""

FEATURE_COLUMNS = (
    "order_count_last_30_days",
    "total_spent_last_30_days",
    "avg_order_value",
    "preferred_category",
    "lifetime_order_count",
    "lifetime_value",
    "lifetime_segment",
)


Window = tuple[datetime, str]  # window start, currency


async def expected_hourly(
    connection: asyncpg.Connection,
    retention: timedelta | None = None,
    size: timedelta = timedelta(hours=1),
) -> dict[Window, tuple]:
    """Hourly revenue per window: from the current rows (``retention`` None, only right
    while no change was late), else each order as it stood before its window left
    retention."""
    if retention is None:
        rows = await connection.fetch(HOURLY)
    else:
        rows = await connection.fetch(HOURLY_SETTLED, size, retention)
    return {
        (r["window_start"], r["currency"]): (r["revenue"], r["order_count"], r["avg_order_value"])
        for r in rows
    }


async def expected_late_orders(
    connection: asyncpg.Connection, retention: timedelta, size: timedelta = timedelta(hours=1)
) -> set[tuple[int, datetime, str]]:
    """(order id, window start, currency) of every order with a late change."""
    rows = await connection.fetch(LATE_CHANGES, size, retention)
    return {(r["order_id"], r["window_start"], r["currency"]) for r in rows}


async def expected_features(connection: asyncpg.Connection, as_of: datetime) -> dict[int, tuple]:
    return {
        r["customer_id"]: tuple(r[c] for c in FEATURE_COLUMNS)
        for r in await connection.fetch(FEATURES, as_of)
    }
