"""Source DDL on the stack: silver evolves without rounding, or the table pauses and resumes
exactly once; a TRUNCATE reaches silver and gold (issue 26, docs/decisions/0021).
Oracle: SQL over the OLTP tables and the records on Kafka (sink_env)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from admin.capture import read_topics
from config.settings import Settings
from observability.metrics import Metrics
from observability.server import MetricsServer
from oltp.loadgen import LoadgenConfig, run_loadgen
from records.change_events import ChangeEvent, Operation, SourcePosition
from sinks.postgres.batch import ConsumedRecord, plan_batch
from sinks.postgres.connection import connect
from sinks.postgres.medallion import MedallionWriter
from sinks.postgres.offsets import OffsetStore
from sinks.postgres.quality.gate import RulesQualityGate
from sinks.postgres.schema_changes import accept_schema_changes, paused_tables
from tests.integration.cli import run_cli
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


def with_policies(env: SinkEnv, policies: dict[str, str]) -> SinkEnv:
    """The same pipeline with per-table schema drift policies (BV_SINK__SCHEMA_POLICIES)."""
    sink = env.settings.sink.model_copy(update={"schema_policies": policies})
    return SinkEnv(env.settings.model_copy(update={"sink": sink}), env.run_id)


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
    env = with_policies(env, {"payments": "ignore", "customers": "pause"})
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


async def test_under_evolve_a_drop_and_widenings_evolve_and_a_rename_waits_for_a_backfill(
    env: SinkEnv,
) -> None:
    written = await run_loadgen(env.settings, LoadgenConfig(seed=31, transactions=40))
    connection = await connect(env.settings.postgres)
    try:
        async with running_sink(env):
            await wait_until_caught_up(env, expected_records(written))
            names = dict(
                await connection.fetch("SELECT customer_id, first_name FROM silver.customers")
            )
            methods = dict(await connection.fetch("SELECT payment_id, method FROM silver.payments"))
            # A rename is a drop plus an add; char(2) -> varchar(12) is a string silver holds
            # as text already (no drift); int -> bigint must widen silver before a big value.
            await connection.execute(
                "ALTER TABLE public.customers RENAME COLUMN first_name TO given_name;"
                "ALTER TABLE public.customers ALTER COLUMN country TYPE varchar(12);"
                "ALTER TABLE public.order_items ALTER COLUMN quantity TYPE bigint;"
                "ALTER TABLE public.payments DROP COLUMN method"
            )
            customers = await connection.fetch(
                "UPDATE public.customers SET country = 'NZ-' || customer_id WHERE customer_id IN "
                "(SELECT customer_id FROM public.customers ORDER BY 1 LIMIT 5) "
                "RETURNING customer_id"
            )
            items = await connection.fetch(
                "UPDATE public.order_items SET quantity = 3000000000 + order_item_id "
                "WHERE order_item_id IN (SELECT order_item_id FROM public.order_items "
                "ORDER BY 1 LIMIT 5) RETURNING 1"
            )
            paid = await connection.fetch(
                "UPDATE public.payments SET status = 'FAILED' WHERE payment_id IN "
                "(SELECT payment_id FROM public.payments ORDER BY 1 LIMIT 5) RETURNING payment_id"
            )

            async def rename_paused() -> bool:
                return [r["table_name"] for r in await paused_tables(connection)] == ["customers"]

            await eventually(rename_paused, timeout_s=90, what="customers paused by the rename")
            # The operator keeps first_name for its readers, backfills given_name, accepts.
            await connection.execute(
                "ALTER TABLE silver.customers ADD COLUMN given_name text;"
                "UPDATE silver.customers SET given_name = first_name"
            )
            assert await accept_schema_changes(connection, "customers") == 2
            more = len(customers) + len(items) + len(paid)
            await wait_until_caught_up(env, expected_records(written) + more)
        assert sorted(await recorded(connection)) == [
            ("customers", "first_name", "dropped_column", "pause", None),
            ("customers", "given_name", "new_column", "pause", "text"),
            ("order_items", "quantity", "widened", "evolve", "bigint"),
            ("payments", "method", "dropped_column", "keep", None),
        ]
        # I3 over every column silver and the source share: given_name, the long countries,
        # the quantities beyond the int range (exact), the payments without method.
        await assert_exactly_once(env)
        assert await connection.fetchval(
            "SELECT count(*) FROM silver.order_items WHERE quantity > 2147483647"
        ) == len(items)
        # The dropped columns stay; only rows changed after the drop hold NULL there (0021).
        for table, key, column, before, changed in (
            ("payments", "payment_id", "method", methods, paid),
            ("customers", "customer_id", "first_name", names, customers),
        ):
            after = dict(await connection.fetch(f"SELECT {key}, {column} FROM silver.{table}"))
            nulled = {r[0] for r in changed}
            assert after == {k: None if k in nulled else v for k, v in before.items()}
    finally:
        await connection.close()


async def test_under_pause_a_widening_and_a_drop_hold_their_tables_shown_in_status_until_accepted(
    env: SinkEnv,
) -> None:
    env = with_policies(env, {"order_items": "pause", "payments": "pause"})
    metrics = Metrics(CollectorRegistry())
    written = await run_loadgen(env.settings, LoadgenConfig(seed=32, transactions=40))
    connection = await connect(env.settings.postgres)
    try:
        async with running_sink(env, metrics=metrics) as sink:
            await wait_until_caught_up(env, expected_records(written))
            before = await connection.fetch("SELECT * FROM silver.order_items ORDER BY 1")
            await connection.execute(
                "ALTER TABLE public.order_items ALTER COLUMN quantity TYPE bigint;"
                "ALTER TABLE public.payments DROP COLUMN method"
            )
            items = await connection.fetchval(
                "WITH u AS (UPDATE public.order_items SET quantity = 3000000000 + order_item_id "
                "RETURNING 1) SELECT count(*) FROM u"
            )
            payments = await connection.fetchval(
                "WITH u AS (UPDATE public.payments SET status = 'FAILED' RETURNING 1) "
                "SELECT count(*) FROM u"
            )

            async def both_paused() -> bool:
                return len(await paused_tables(connection)) == 2

            await eventually(both_paused, timeout_s=90, what="both tables paused")
            paused = {r["table_name"]: r for r in await paused_tables(connection)}
            assert paused["order_items"]["reason"] == (
                "widened quantity: source bigint, silver integer: table paused until "
                "`bitvelocity schema accept` (policy pause)"
            )
            assert paused["payments"]["reason"].startswith("dropped column method (silver text)")
            # Each pause names the first record of the new schema, where the offset stays.
            stored = await stored_offsets(env)
            for row in paused.values():
                where = (row["source_topic"], row["source_partition"])
                assert stored[where] == row["source_offset"]
                assert where in sink.parked  # the consumer fetches it no more
                assert framed_schema_id(env, *where, row["source_offset"]) == row["schema_id"]
            assert await connection.fetch("SELECT * FROM silver.order_items ORDER BY 1") == before
            for table in paused:
                assert (
                    metrics.registry.get_sample_value("bv_schema_paused_tables", {"table": table})
                    == 1
                )
            with MetricsServer(metrics.registry, host="127.0.0.1", port=0) as server:
                status = await asyncio.to_thread(
                    run_cli, "status", "--json", "--interval", "0.1",
                    "--target", f"127.0.0.1:{server.port}",
                    env={"BV_POSTGRES__DATABASE": env.database},
                )  # fmt: skip
            assert status.returncode == 0, status.stderr
            shown = {r["table_name"]: r for r in json.loads(status.stdout)["paused_tables"]}
            assert {t: (r["schema_id"], r["reason"]) for t, r in shown.items()} == {
                t: (r["schema_id"], r["reason"]) for t, r in paused.items()
            }
            assert all(r["since"] for r in shown.values())
            # The operator widens silver for the one; the dropped column needs nothing.
            await connection.execute(
                "ALTER TABLE silver.order_items ALTER COLUMN quantity TYPE bigint"
            )
            for table in paused:
                assert await accept_schema_changes(connection, table) == 1
            await wait_until_caught_up(env, expected_records(written) + items + payments)
            assert (
                metrics.registry.get_sample_value(
                    "bv_schema_paused_tables", {"table": "order_items"}
                )
                == 0
            )
            assert sink.parked == frozenset()
        assert await paused_tables(connection) == []
        await assert_exactly_once(env)  # resumed exactly once; quantities beyond int exact
    finally:
        await connection.close()


def framed_schema_id(env: SinkEnv, topic: str, partition: int, offset: int) -> int:
    """The writer schema id in the record's wire framing (magic byte, 4-byte id)."""
    messages = read_topics(
        env.settings.kafka.bootstrap_servers,
        [topic],
        done=lambda read: any((m.partition(), m.offset()) == (partition, offset) for m in read),
        timeout_s=30,
    )
    value = next(m.value() for m in messages if (m.partition(), m.offset()) == (partition, offset))
    assert isinstance(value, bytes)
    assert value[0] == 0
    return int.from_bytes(value[1:5], "big")


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


def payments_record(
    op: Operation, lsn: int, partition: int, payment_id: int | None = None
) -> ConsumedRecord:
    """A payments change at ``lsn`` on ``partition`` (offset 0), as the decoder makes it."""
    row = None
    if payment_id is not None:
        row = {"payment_id": payment_id, "amount": Decimal("1.00"), "currency": "USD"}
    event = ChangeEvent(
        op=op,
        schema="public",
        table="payments",
        key=None if payment_id is None else {"payment_id": payment_id},
        before=None,
        after=row,
        position=SourcePosition(lsn, lsn, None, None, "false"),
        committed_at=datetime.now(UTC),
    )
    return ConsumedRecord("bitvelocity.public.payments", partition, 0, event)


async def test_a_truncate_waits_for_a_concurrent_writer_of_its_table_and_deletes_its_rows(
    env: SinkEnv,
) -> None:
    """Two lanes or two workers write partitions of one table at once. A batch holding a row
    from before a truncate, committed after the truncate's delete ran, kept that row live
    (the test above failed so with two write lanes). The truncate now locks the silver
    table against other writers: it waits for that batch, then deletes its row."""
    writer = MedallionWriter(OffsetStore(env.group, "w"), RulesQualityGate(env.settings))
    other, truncating = await connect(env.settings.postgres), await connect(env.settings.postgres)
    try:
        for connection in (other, truncating):
            await writer.prepare(connection)
        topic = "bitvelocity.public.payments"
        older = plan_batch([payments_record(Operation.CREATE, 100, 0, payment_id=1)], "pg")
        truncate = plan_batch([payments_record(Operation.TRUNCATE, 200, 1)], "pg")
        open_batch = other.transaction()  # the other writer has not committed yet
        await open_batch.start()
        await writer.write(other, await writer.offsets.claim(other, topic, 0), older)
        claim = await writer.offsets.claim(truncating, topic, 1)
        truncating_write = asyncio.create_task(writer.write(truncating, claim, truncate))
        await asyncio.sleep(1.0)
        assert not truncating_write.done()  # it waits for the other writer's transaction
        await open_batch.commit()
        await asyncio.wait_for(truncating_write, timeout=30)
        deleted = await other.fetchval(
            "SELECT hard_deleted FROM silver.payments WHERE payment_id = 1"
        )
        assert deleted is True
    finally:
        await other.close()
        await truncating.close()


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
