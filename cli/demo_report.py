"""What ``bitvelocity demo`` prints after the bronze/silver table: short, one block per check."""

from __future__ import annotations

import json

from rich.markup import escape
from rich.table import Table

from chaos.expectations import FEATURE_COLUMNS
from cli.console import out
from demo.cache import CacheRound
from demo.checks import AnalyticsCheck
from demo.pipeline import DemoSummary
from demo.views import ViewsAnswer

OK, BAD = "[green]ok[/]", "[red]MISMATCH[/]"
#: Feature columns shown per customer (the rest are in the web view's answer).
SHOWN = (
    "order_count_last_30_days",
    "total_spent_last_30_days",
    "lifetime_value",
    "lifetime_segment",
)


def hourly_table(check: AnalyticsCheck) -> Table:
    """The busiest windows per currency and the totals, with the verdict of the comparison."""
    bad = {m.key for m in check.mismatches if m.table == "gold.hourly_revenue"}
    table = Table(
        title=f"Hourly revenue, gold vs SQL ({check.windows_compared} windows in retention)"
    )
    for column in ("currency", "window (UTC)", "revenue", "orders", ""):
        table.add_column(
            column, justify="left" if column in ("currency", "window (UTC)") else "right"
        )
    for w in check.busiest:
        key = f"window {w.window_start.isoformat()} {w.currency}"
        table.add_row(
            w.currency, f"{w.window_start:%Y-%m-%d %H:%M}", f"{w.revenue}", str(w.order_count),
            BAD if key in bad else OK,
        )  # fmt: skip
    for currency, (revenue, orders) in check.totals.items():
        verdict = BAD if f"total {currency}" in bad else OK
        table.add_row(f"[bold]{currency}[/]", "total", f"[bold]{revenue}[/]", str(orders), verdict)
    return table


def features_table(check: AnalyticsCheck) -> Table:
    bad = {m.key for m in check.mismatches if m.table == "gold.customer_features"}
    table = Table(
        title=f"Customer features, gold vs SQL ({check.customers_compared} customers; "
        f"top {len(check.customers)} by lifetime value)"
    )
    table.add_column("customer")
    for column in SHOWN:
        table.add_column(column.replace("_", " "), justify="right")
    table.add_column("")
    indexes = [FEATURE_COLUMNS.index(c) for c in SHOWN]
    for line in check.customers:
        values = [str(line.values[i]) if line.values else "-" for i in indexes]
        verdict = BAD if f"customer {line.customer_id}" in bad else OK
        table.add_row(str(line.customer_id), *values, verdict)
    return table


def analytics_lines(check: AnalyticsCheck) -> list[str]:
    redis_bad = sum(1 for m in check.mismatches if m.table == "redis")
    lines = [
        f"Redis feature store: {check.redis_hashes} hashes, "
        + (
            "[green]equal to gold.customer_features for every customer[/]"
            if not redis_bad
            else f"[red]{redis_bad} differ from gold.customer_features[/]"
        )
    ]
    if check.orders_beyond_retention:
        lines.append(
            f"{check.orders_beyond_retention} confirmed orders are older than the analytics "
            "retention: their windows are not in gold by design and were not compared"
        )
    return lines


def cache_lines(round_: CacheRound | None) -> list[str]:
    if round_ is None:
        return ["[red]cache round not run[/]"]
    evicted = round_.evicted_after_s
    if not round_.ok or evicted is None:
        return [
            f"[red]cache round failed[/]: product {round_.product_id} price {round_.old_price} -> "
            f"{round_.new_price}, the cache served {round_.price_after} (eviction "
            f"{'seen' if evicted is not None else 'not seen'})"
        ]
    return [
        f"Cache: product {round_.product_id} read from {round_.first_read_layer} at "
        f"{round_.old_price}; price set to {round_.new_price} in PostgreSQL; evicted "
        f"[bold]{evicted * 1000:.0f} ms[/] after the commit (CDC -> "
        f"product-updates -> Redis); next read from {round_.after_read_layer}: "
        f"{round_.price_after} {OK}"
    ]


def views_lines(views: ViewsAnswer | None) -> list[str]:
    if views is None:
        return ["[red]web views not asked (no customer in gold)[/]"]
    lines = [
        "Web views (while `bitvelocity worker` runs): " + escape("  ".join(views.urls)),
        escape(views.curl),
    ]
    answer = views.answer if isinstance(views.answer, str) else json.dumps(views.answer)
    status = OK if views.ok else f"[red]HTTP {views.status}[/]"
    lines.append(f"-> {status} {escape(answer[:300])}")
    return lines


def print_demo_checks(summary: DemoSummary) -> None:
    """The analytics, feature, Redis, cache and web-view blocks, each with its verdict."""
    if summary.analytics is not None:
        print_analytics(summary.analytics)
    for line in [*cache_lines(summary.cache), *views_lines(summary.views)]:
        out.print(line, soft_wrap=True)


def analytics_problems(check: AnalyticsCheck) -> list[str]:
    """The first differences, each naming its table and key."""
    shown = check.mismatches[:3]
    problems = [str(m) for m in shown]
    if len(check.mismatches) > len(shown):
        problems.append(f"and {len(check.mismatches) - len(shown)} more differences")
    if not check.windows_compared or not check.customers_compared:
        problems.append("nothing to compare: no confirmed orders within retention in public.orders")
    return problems


def print_analytics(check: AnalyticsCheck) -> None:
    out.print(hourly_table(check))
    out.print(features_table(check))
    for line in analytics_lines(check):
        out.print(line)


def demo_failure(summary: DemoSummary) -> str:
    """One line naming what differs: the table and key of the first differences."""
    check = summary.analytics
    problems = ["the analytics were not checked"] if check is None else analytics_problems(check)
    if summary.cache is None or not summary.cache.ok:
        problems.append("the cache did not serve the new price after the change")
    if summary.views is None or not summary.views.ok:
        problems.append("the web views did not answer")
    return "demo checks failed: " + "; ".join(problems)
