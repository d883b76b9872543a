"""Expected analytics recomputed from the OLTP tables: the SQL half of the chaos oracle (I4).

Written independently of ``tables/``: plain SQL over ``public.*`` and ``ref.currency_rates``
at a given as-of time, with the definitions of DESIGN.md section 8. Ties on category name
compare in code-point order (``COLLATE "C"``), as Python's ``str`` does. The analytics
integration test (``tests/integration/analytics_oracle.py``) judges by the same queries.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

HOURLY = """
SELECT date_bin('1 hour', created_at, timestamptz '1970-01-01 00:00+00') AS window_start,
       trim(currency) AS currency, sum(total_amount) AS revenue, count(*)::int AS order_count,
       round(sum(total_amount) / count(*), 2) AS avg_order_value
FROM public.orders
WHERE status IN ('CONFIRMED', 'SHIPPED', 'DELIVERED') AND deleted_at IS NULL
GROUP BY 1, 2
"""

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


async def expected_hourly(connection: asyncpg.Connection) -> dict[tuple[datetime, str], tuple]:
    return {
        (r["window_start"], r["currency"]): (r["revenue"], r["order_count"], r["avg_order_value"])
        for r in await connection.fetch(HOURLY)
    }


async def expected_features(connection: asyncpg.Connection, as_of: datetime) -> dict[int, tuple]:
    return {
        r["customer_id"]: tuple(r[c] for c in FEATURE_COLUMNS)
        for r in await connection.fetch(FEATURES, as_of)
    }
