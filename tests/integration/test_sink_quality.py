"""Quality rules inside the running sink: hot-added rules, late references, failures, gold gate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest

from admin.capture import read_topics
from config.settings import Settings
from oltp.loadgen import LoadgenConfig, run_loadgen
from sinks.postgres.connection import connect
from tests.integration.sink_env import (
    SinkEnv,
    eventually,
    expected_records,
    running_sink,
    sink_environment,
    wait_until_caught_up,
)


@pytest.fixture
def env(settings: Settings) -> Iterator[SinkEnv]:
    with sink_environment(settings, batch_max_records=100) as environment:
        yield environment


async def test_rules_added_while_running_apply_and_errors_stay_out_of_gold(env: SinkEnv) -> None:
    seed = await run_loadgen(env.settings, LoadgenConfig(seed=31, transactions=40))
    db = await connect(env.settings.postgres)
    try:
        async with running_sink(env):
            await wait_until_caught_up(env, expected_records(seed))
            # New rules, inserted while the worker runs: no restart.
            await db.execute(
                "INSERT INTO ops.data_quality_rules (table_name, column_name, rule_type, "
                "rule_config, severity) VALUES "
                "('orders', 'total_amount', 'RANGE', '{\"min\": 0, \"max\": 50}', 'ERROR') "
                "ON CONFLICT (table_name, column_name, rule_type) DO UPDATE "
                "SET rule_config = EXCLUDED.rule_config",
            )
            await db.execute(
                "INSERT INTO ops.data_quality_rules (table_name, column_name, rule_type, "
                "rule_config, severity) VALUES "
                "('categories', 'parent_category_id', 'NOT_NULL', '{}', 'WARNING')"
            )
            await asyncio.sleep(2.5)  # one rule-cache refresh interval
            customer = await db.fetchval(
                "INSERT INTO customers (email, first_name, last_name, country) "
                "VALUES ('no-dot@example', 'Ann', 'Lee', 'SE') RETURNING customer_id"
            )
            await db.execute("INSERT INTO categories (name) VALUES ('Unparented')")
            more = await run_loadgen(env.settings, LoadgenConfig(seed=32, transactions=60))
            await wait_until_caught_up(env, expected_records(seed, more) + 2)
        big = await db.fetch(
            "SELECT order_id, order_date, quality_issues, data_quality_score FROM silver.orders "
            "WHERE total_amount > 50 AND processed_at > now() - interval '1 minute' "
            "AND source_committed_at > (SELECT max(updated_at) FROM ops.data_quality_rules "
            "WHERE rule_type = 'RANGE')"
        )
        assert big, "the workload produced no order above the new maximum"
        for row in big:
            assert "ERROR:RANGE:total_amount" in row["quality_issues"]
            assert row["data_quality_score"] < 1
            in_gold = await db.fetchval(
                "SELECT count(*) FROM gold.order_facts WHERE order_id = $1 AND order_date = $2 "
                "AND source_lsn = (SELECT source_lsn FROM silver.orders "
                "WHERE order_id = $1 AND order_date = $2)",
                row["order_id"],
                row["order_date"],
            )
            assert in_gold == 0, "a row with an ERROR issue reached gold"
        email = await db.fetchrow(
            "SELECT quality_issues FROM silver.customers WHERE customer_id = $1", customer
        )
        assert "ERROR:PATTERN:email" in email["quality_issues"]
        samples = await db.fetch(
            "SELECT r.rule_type, q.failed_count, q.sample_failures FROM ops.data_quality_results q "
            "JOIN ops.data_quality_rules r USING (rule_id) WHERE q.failed_count > 0"
        )
        failed_types = {row["rule_type"] for row in samples}
        assert {"RANGE", "PATTERN", "NOT_NULL"} <= failed_types
        for row in samples:
            assert 1 <= len(orjson.loads(row["sample_failures"])) <= 5
        pattern_samples = next(r for r in samples if r["rule_type"] == "PATTERN")
        assert b"no-dot@example" not in row_bytes(pattern_samples["sample_failures"])
    finally:
        await db.close()


def row_bytes(value: object) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(str(value), "utf-8")


async def test_a_reference_whose_target_arrives_later_does_not_fail(env: SinkEnv) -> None:
    seed = await run_loadgen(env.settings, LoadgenConfig(seed=33, transactions=20))
    orders_only = SinkEnv(env.settings, env.run_id)
    customers_topic = env.settings.topics.cdc_topic("customers")
    db = await connect(env.settings.postgres)
    try:
        customer = await db.fetchval(
            "INSERT INTO customers (email, first_name, last_name, country) "
            "VALUES ('late@example.com', 'Late', 'Comer', 'NL') RETURNING customer_id"
        )
        order_date = await db.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date")
        order = await db.fetchval(
            "INSERT INTO orders (customer_id, currency, total_amount) VALUES ($1, 'EUR', 10) "
            "RETURNING order_id",
            customer,
        )
        # First only everything but customers: the order's reference cannot be satisfied.
        others = [t for t in env.topics if t != customers_topic]
        async with running_sink(orders_only, "no-customers", topics=others):

            async def order_in_silver() -> bool:
                return bool(
                    await db.fetchval(
                        "SELECT count(*) FROM silver.orders WHERE order_id = $1", order
                    )
                )

            await eventually(order_in_silver, timeout_s=60, what="the order in silver")
            pending = await db.fetchval("SELECT count(*) FROM ops.pending_reference_checks")
            assert pending >= 1
            await asyncio.sleep(2)  # the customer arrives 2 s later
            async with running_sink(
                orders_only, "customers", topics=[customers_topic], group="late"
            ):

                async def settled() -> bool:
                    row = await db.fetchrow(
                        "SELECT quality_checks_passed, quality_issues FROM silver.orders "
                        "WHERE order_id = $1 AND order_date = $2",
                        order,
                        order_date,
                    )
                    return "REFERENCE:customer_id" in row["quality_checks_passed"]

                await eventually(settled, timeout_s=60, what="the reference to be settled")
        row = await db.fetchrow(
            "SELECT quality_issues FROM silver.orders WHERE order_id = $1", order
        )
        assert not any(issue.startswith("ERROR") for issue in row["quality_issues"])
        del seed
    finally:
        await db.close()


async def test_each_committed_batch_emits_openlineage_start_and_complete(env: SinkEnv) -> None:
    written = await run_loadgen(env.settings, LoadgenConfig(seed=34, transactions=30))
    async with running_sink(env) as sink:
        await wait_until_caught_up(env, expected_records(written))
    messages = read_topics(
        env.settings.kafka.bootstrap_servers,
        [env.settings.topics.openlineage],
        done=lambda read: False,
        timeout_s=5,
    )
    events = [orjson.loads(m.value() or b"{}") for m in messages]
    ours = [e for e in events if e["inputs"][0]["name"].startswith(env.settings.topics.cdc_prefix)]
    assert len(ours) == 2 * sink.stats.batches
    assert {e["eventType"] for e in ours} == {"START", "COMPLETE"}
    complete = [e for e in ours if e["eventType"] == "COMPLETE"]
    assert sum(e["run"]["facets"]["bitvelocity_batch"]["consumed"] for e in complete) == (
        sink.stats.consumed
    )
