"""A TRUNCATE on the source reaches silver and gold (issue 26, docs/decisions/0021)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from config.settings import Settings
from oltp.loadgen import LoadgenConfig, run_loadgen
from sinks.postgres.connection import connect
from tests.integration.sink_env import (
    SinkEnv,
    assert_exactly_once,
    expected_records,
    running_sink,
    sink_environment,
    wait_until_caught_up,
)

pytestmark = pytest.mark.usefixtures("no_leftovers")


@pytest.fixture
def env(settings: Settings) -> Iterator[SinkEnv]:
    with sink_environment(settings, batch_max_records=50) as environment:
        yield environment


async def test_truncate_under_load_leaves_only_the_rows_inserted_after_it_live(
    env: SinkEnv,
) -> None:
    written = await run_loadgen(env.settings, LoadgenConfig(seed=26, transactions=150))
    connection = await connect(env.settings.postgres)
    try:
        async with running_sink(env):  # the sink is consuming the load while the DDL runs
            truncated = await connection.fetchval("SELECT count(*) FROM public.payments")
            await connection.execute("TRUNCATE public.payments, public.order_items")
            inserted = await connection.fetch(
                "INSERT INTO public.payments (order_id, order_created_date, amount, currency, "
                "method) SELECT order_id, created_date, total_amount, currency, 'CARD' "
                "FROM public.orders ORDER BY order_id LIMIT 4 RETURNING payment_id"
            )
            # One truncate record per table, then the four inserts.
            await wait_until_caught_up(env, expected_records(written) + 2 + len(inserted))
        assert truncated > 0
        await assert_exactly_once(env)  # I1, I2, I6, and I3: silver equals the source
        live = await connection.fetch(
            "SELECT payment_id FROM silver.payments WHERE NOT hard_deleted ORDER BY 1"
        )
        assert [r[0] for r in live] == sorted(r[0] for r in inserted)
        assert (
            await connection.fetchval(
                "SELECT count(*) FROM silver.order_items WHERE NOT hard_deleted"
            )
            == 0
        )
        bronze = await connection.fetch(
            "SELECT table_name FROM bronze.payments WHERE operation_type = 'TRUNCATE' "
            "UNION ALL SELECT table_name FROM bronze.order_items "
            "WHERE operation_type = 'TRUNCATE'"
        )
        assert sorted(r[0] for r in bronze) == ["order_items", "payments"]
        recorded = await connection.fetchval("SELECT count(*) FROM ops.source_truncations")
        assert recorded == 2
    finally:
        await connection.close()


async def test_a_truncate_of_the_partitioned_orders_closes_their_gold_facts(env: SinkEnv) -> None:
    written = await run_loadgen(env.settings, LoadgenConfig(seed=29, transactions=60))
    connection = await connect(env.settings.postgres)
    try:
        async with running_sink(env):
            await wait_until_caught_up(env, expected_records(written))
            live = await connection.fetchval("SELECT count(*) FROM public.orders")
            # CASCADE: order_items and payments reference orders; one truncate record each.
            await connection.execute("TRUNCATE public.orders CASCADE")
            await wait_until_caught_up(env, expected_records(written) + 3)
        assert live > 0
        await assert_exactly_once(env)
        assert (
            await connection.fetchval("SELECT count(*) FROM silver.orders WHERE NOT hard_deleted")
            == 0
        )
        # Type 2: each order's current fact is now a deleted one, its live fact closed.
        current = await connection.fetch(
            "SELECT is_deleted, is_revenue_bearing FROM gold.order_facts WHERE is_current"
        )
        assert current
        assert all(r["is_deleted"] and not r["is_revenue_bearing"] for r in current)
        assert (
            await connection.fetchval(
                "SELECT count(*) FROM gold.order_facts WHERE NOT is_current AND valid_to IS NULL"
            )
            == 0
        )
    finally:
        await connection.close()
