"""``bitvelocity cache warm | stats | flush | run``: operate the product, category and
customer caches (DESIGN.md section 9)."""

from __future__ import annotations

import asyncio

import typer
from rich.table import Table

from agents.cache_service import run_cache_service
from cache.service import cache_stats, flush_cache, warm_once
from cli.console import out
from config.settings import load_settings

cache_app = typer.Typer(
    help="Product, category and customer caches: warm, inspect, flush, or run the agents.",
    no_args_is_help=True,
)


@cache_app.command("warm")
def warm_command() -> None:
    """Load the top products by gold sales into L2 now (the service does it every 5 min)."""
    result = asyncio.run(warm_once(load_settings()))
    out.print(
        f"warmed {result.stored} of {result.products} top products into L2 "
        f"in {result.seconds * 1000:.0f} ms"
    )


@cache_app.command("stats")
def stats_command() -> None:
    """Entries in L2 per cache, and how many L1 caches listen for invalidations."""
    settings = load_settings()
    stats = asyncio.run(cache_stats(settings))
    table = Table(title=f"cache {settings.cache.key_prefix}")
    table.add_column("cache")
    table.add_column("L2 entries", justify="right")
    for name, count in stats.entries.items():
        table.add_row(name, str(count))
    out.print(table)
    out.print(f"L1 subscribers on {settings.cache.channel}: {stats.subscribers}")


@cache_app.command("flush")
def flush_command() -> None:
    """Delete every L2 entry and generation, and tell every L1 to drop everything."""
    deleted = asyncio.run(flush_cache(load_settings()))
    out.print(f"flushed {deleted} keys; every L1 was told to drop its entries")


@cache_app.command("run")
def run_command() -> None:
    """Run the product-updates and invalidation agents and the warmer until Ctrl-C."""
    asyncio.run(run_cache_service(load_settings()))
