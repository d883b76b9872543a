"""Source DDL on the stack: silver evolves without rounding, or the table pauses and resumes
exactly once; a TRUNCATE reaches silver and gold (issue 26, docs/decisions/0021).
Oracle: SQL over the OLTP tables and the records on Kafka (sink_env)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import asyncpg
import pytest

from config.settings import Settings
from oltp.loadgen import LoadgenConfig, run_loadgen
from sinks.postgres.connection import connect
from sinks.postgres.schema_changes import accept_schema_changes
from tests.integration.sink_env import (
    SinkEnv,
    assert_exactly_once,
    eventually,
    expected_records,
    high_watermarks,
    running_sink,
    sink_environment,
    stored_offsets,
    wait_until_caught_up,
)

pytestmark = pytest.mark.usefixtures("no_leftovers")


@pytest.fixture
def env(settings: Settings) -> Iterator[SinkEnv]:
    with sink_environment(settings, batch_max_records=50) as environment:
        yield environment


async def recorded(connection: asyncpg.Connection) -> list[tuple[str, str, str, str | None]]:
    rows = await connection.fetch(
        "SELECT table_name, column_name, change, decision, target_type "
        "FROM ops.schema_changes ORDER BY change_id"
    )
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


async def test_an_added_column_and_a_widened_numeric_evolve_silver_to_equal_the_source(
    env: SinkEnv,
) -> None:
    written = await run_loadgen(env.settings, LoadgenConfig(seed=27, transactions=60))
    connection = await connect(env.settings.postgres)
    try:
        # Two workers share the partitions: each must follow silver's new shape.
        async with running_sink(env, "w1"), running_sink(env, "w2"):
            await wait_until_caught_up(env, expected_records(written))
            await connection.execute("ALTER TABLE public.orders ADD COLUMN gift_note text")
            await connection.execute(
                "UPDATE public.orders SET gift_note = 'for ' || order_id::text "
                "WHERE order_id IN (SELECT order_id FROM public.orders ORDER BY 1 LIMIT 5)"
            )
            await connection.execute(
                "ALTER TABLE public.order_items ALTER COLUMN unit_price TYPE numeric(14, 3)"
            )
            await connection.execute(
                "UPDATE public.order_items SET unit_price = 267.685 + order_item_id "
                "WHERE order_item_id IN (SELECT order_item_id FROM public.order_items "
                "ORDER BY 1 LIMIT 5)"
            )
            await wait_until_caught_up(env, expected_records(written) + 10)
        # Two workers: the two tables' changes may be recorded in either order.
        assert sorted(await recorded(connection)) == [
            ("order_items", "unit_price", "widened", "evolve", "numeric(14, 3)"),
            ("orders", "gift_note", "new_column", "evolve", "text"),
        ]
        notes = {
            r[0]: r[1]
            for r in await connection.fetch(
                "SELECT order_id, gift_note FROM silver.orders WHERE NOT hard_deleted"
            )
        }
        source_notes = {
            r[0]: r[1]
            for r in await connection.fetch("SELECT order_id, gift_note FROM public.orders")
        }
        assert notes == source_notes
        assert sum(v is not None for v in notes.values()) == 5
        prices = await connection.fetch(
            "SELECT s.unit_price, o.unit_price FROM silver.order_items AS s "
            "JOIN public.order_items AS o USING (order_item_id)"
        )
        assert all(silver == source for silver, source in prices)
        # The five new prices keep their third decimal (267.685 + id): nothing rounded.
        assert sum(silver % Decimal("0.01") == Decimal("0.005") for silver, _ in prices) == 5
        await assert_exactly_once(env)
    finally:
        await connection.close()


async def test_a_narrowed_numeric_pauses_the_table_until_accepted_then_resumes_exactly_once(
    env: SinkEnv,
) -> None:
    written = await run_loadgen(env.settings, LoadgenConfig(seed=28, transactions=60))
    connection = await connect(env.settings.postgres)
    try:
        async with running_sink(env):
            await wait_until_caught_up(env, expected_records(written))
            before = dict(
                await connection.fetch("SELECT order_item_id, quantity FROM silver.order_items")
            )
            # The source rounds its own rows to one decimal; no change event says so.
            await connection.execute(
                "ALTER TABLE public.order_items ALTER COLUMN unit_price TYPE numeric(12, 1)"
            )
            await connection.execute("UPDATE public.order_items SET quantity = quantity + 1")
            await connection.execute("UPDATE public.customers SET country = 'NZ'")
            items = await connection.fetchval("SELECT count(*) FROM public.order_items")
            customers = await connection.fetchval("SELECT count(*) FROM public.customers")

            async def customers_caught_up() -> bool:
                return (
                    await connection.fetchval(
                        "SELECT count(*) FROM silver.customers WHERE country = 'NZ'"
                    )
                    == customers
                )

            async def pause_recorded() -> bool:
                return bool(await recorded(connection))

            await eventually(customers_caught_up, timeout_s=90, what="silver.customers")
            await eventually(pause_recorded, timeout_s=60, what="the pause recorded")
            paused = await recorded(connection)
            assert paused == [("order_items", "unit_price", "narrowed", "pause", None)]
            # Nothing of order_items after the change was written: the rest ran on.
            assert (
                dict(
                    await connection.fetch("SELECT order_item_id, quantity FROM silver.order_items")
                )
                == before
            )
            stored = await stored_offsets(env)
            marks = high_watermarks(env)
            held = [k for k in marks if k[0].endswith(".order_items") and stored[k] < marks[k]]
            assert held  # the stored offsets stay at the change
            # The operator migrates silver as the source was, then accepts.
            await connection.execute(
                "ALTER TABLE silver.order_items ALTER COLUMN unit_price TYPE numeric(12, 1)"
            )
            assert await accept_schema_changes(connection, "order_items") == 1
            await wait_until_caught_up(env, expected_records(written) + items + customers)
        await assert_exactly_once(env)  # I1, I2, I3 (prices and quantities), I6
    finally:
        await connection.close()


async def test_ignore_keeps_silvers_shape_and_pause_holds_a_new_column_until_accepted(
    env: SinkEnv,
) -> None:
    policies = {"payments": "ignore", "customers": "pause"}
    settings = env.settings.model_copy(
        update={"sink": env.settings.sink.model_copy(update={"schema_policies": policies})}
    )
    env = SinkEnv(settings, env.run_id)
    written = await run_loadgen(env.settings, LoadgenConfig(seed=30, transactions=40))
    connection = await connect(env.settings.postgres)
    try:
        async with running_sink(env):
            await wait_until_caught_up(env, expected_records(written))
            customers = dict(
                await connection.fetch("SELECT customer_id, updated_at FROM silver.customers")
            )
            await connection.execute("ALTER TABLE public.payments ADD COLUMN note text")
            await connection.execute("UPDATE public.payments SET note = 'n', status = 'FAILED'")
            await connection.execute("ALTER TABLE public.customers ADD COLUMN nickname text")
            await connection.execute("UPDATE public.customers SET nickname = 'x'")
            payments = await connection.fetchval("SELECT count(*) FROM public.payments")

            async def payments_written() -> bool:
                return payments == await connection.fetchval(
                    "SELECT count(*) FROM silver.payments WHERE status = 'FAILED'"
                )

            async def both_recorded() -> bool:
                return len(await recorded(connection)) == 2

            await eventually(payments_written, timeout_s=90, what="silver.payments")
            await eventually(both_recorded, timeout_s=60, what="both schema changes recorded")
            assert sorted(await recorded(connection)) == [
                ("customers", "nickname", "new_column", "pause", "text"),
                ("payments", "note", "new_column", "ignore", "text"),
            ]
            assert (
                await connection.fetchval(
                    "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'silver' "
                    "AND column_name IN ('note', 'nickname')"
                )
                == 0
            )
            assert (
                dict(await connection.fetch("SELECT customer_id, updated_at FROM silver.customers"))
                == customers
            )
            # The operator keeps silver as it is and accepts: customers resume exactly once.
            assert await accept_schema_changes(connection, "customers") == 1
            total = await connection.fetchval("SELECT count(*) FROM public.customers")
            await wait_until_caught_up(env, expected_records(written) + payments + total)
        await assert_exactly_once(env)
    finally:
        await connection.close()


# -- TRUNCATE ------------------------------------------------------------------------------
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


# -- gold columns by a mapping ------------------------------------------------------------
async def test_an_added_column_mapped_to_gold_reaches_the_order_facts(env: SinkEnv) -> None:
    mapping = {"orders.gift_note": "order_facts.gift_note"}
    settings = env.settings.model_copy(
        update={"sink": env.settings.sink.model_copy(update={"gold_columns": mapping})}
    )
    env = SinkEnv(settings, env.run_id)
    written = await run_loadgen(env.settings, LoadgenConfig(seed=31, transactions=60))
    connection = await connect(env.settings.postgres)
    try:
        async with running_sink(env):
            await wait_until_caught_up(env, expected_records(written))
            await connection.execute("ALTER TABLE public.orders ADD COLUMN gift_note text")
            await connection.execute(
                "UPDATE public.orders SET gift_note = 'for ' || order_id::text "
                "WHERE order_id IN (SELECT order_id FROM public.orders ORDER BY 1 LIMIT 5)"
            )
            await wait_until_caught_up(env, expected_records(written) + 5)
        # A restarted worker finds silver and gold already evolved and fills gold on.
        async with running_sink(env):
            await connection.execute(
                "UPDATE public.orders SET gift_note = 'again' WHERE order_id = "
                "(SELECT max(order_id) FROM public.orders)"
            )
            await wait_until_caught_up(env, expected_records(written) + 6)
        gold_type = await connection.fetchval(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_schema = 'gold' AND table_name = 'order_facts' "
            "AND column_name = 'gift_note'"
        )
        assert gold_type == "text"
        facts = dict(
            await connection.fetch(
                "SELECT order_id, gift_note FROM gold.order_facts WHERE is_current"
            )
        )
        source = dict(await connection.fetch("SELECT order_id, gift_note FROM public.orders"))
        # A hard-deleted order keeps its (deleted) fact; every source order has one.
        assert {k: v for k, v in facts.items() if k in source} == source
        assert sum(v is not None for v in facts.values()) == 6
        # Each note opened a new fact (type 2); the fact before it was closed.
        closed = await connection.fetchval(
            "SELECT count(*) FROM gold.order_facts AS f WHERE NOT is_current AND EXISTS "
            "(SELECT 1 FROM public.orders AS o WHERE o.order_id = f.order_id "
            "AND o.gift_note IS NOT NULL)"
        )
        assert closed >= 6
        await assert_exactly_once(env)
    finally:
        await connection.close()
