"""The medallion sink lands every CDC record exactly once in bronze, silver and gold."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import asyncpg
import httpx
import orjson
import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY, CollectorRegistry

from admin.capture import read_topics
from agents.medallion_connections import SinkConnections
from config.errors import FramingError
from config.settings import Settings
from observability.logging import configure_logging
from observability.metrics import Metrics
from observability.server import MetricsServer
from oltp.loadgen import LoadgenConfig, run_loadgen
from serdes.dead_letters import RecordOrigin, dead_letter
from sinks.postgres.batch import ConsumedRecord, plan_batch
from sinks.postgres.connection import connect
from sinks.postgres.medallion import MedallionWriter
from sinks.postgres.offsets import OffsetStore, PartitionFencedError
from sinks.postgres.quality.gate import RulesQualityGate
from tests.integration.sink_env import (
    SinkEnv,
    assert_exactly_once,
    eventually,
    expected_records,
    high_watermarks,
    running_sink,
    sink_environment,
    wait_until_caught_up,
)

#: Everything the module creates is removed again, also when a test fails.
pytestmark = pytest.mark.usefixtures("no_leftovers")


@pytest.fixture
def env(settings: Settings) -> Iterator[SinkEnv]:
    with sink_environment(settings, batch_max_records=100) as environment:
        yield environment


def dlq_total(topic: str) -> float:
    """All dead letters of ``topic`` counted in the process-wide registry, any reason."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name == "bv_dlq_records"
        for sample in family.samples
        if sample.name == "bv_dlq_records_total" and sample.labels.get("topic") == topic
    )


async def daily_sales_matches_oltp(env: SinkEnv) -> None:
    connection = await connect(env.settings.postgres)
    try:
        await connection.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY gold.daily_sales")
        gold = {
            (r["order_date"], r["currency"]): (r["order_count"], r["revenue"])
            for r in await connection.fetch("SELECT * FROM gold.daily_sales")
        }
        source = {
            (r[0], r[1].strip()): (r[2], r[3])
            for r in await connection.fetch(
                "SELECT created_date, currency, count(*), sum(total_amount) FROM public.orders "
                "WHERE status IN ('CONFIRMED', 'SHIPPED', 'DELIVERED') AND deleted_at IS NULL "
                "GROUP BY 1, 2"
            )
        }
        assert gold == source
        current = await connection.fetchval(
            "SELECT count(*) FROM gold.order_facts WHERE is_current"
        )
        orders = await connection.fetchval("SELECT count(*) FROM silver.orders")
        assert current == orders  # no quality ERROR in generated data: every order in gold
    finally:
        await connection.close()


async def test_a_load_lands_exactly_once_in_bronze_silver_and_gold(env: SinkEnv) -> None:
    written = await run_loadgen(env.settings, LoadgenConfig(seed=11, transactions=300))
    async with running_sink(env) as sink:
        await wait_until_caught_up(env, expected_records(written))
    counts = await assert_exactly_once(env)
    assert counts["bronze"] == sum(change.total for change in written.tables.values())
    assert sink.stats.fenced == 0
    await daily_sales_matches_oltp(env)


@pytest.mark.timeout(400)
async def test_a_20k_change_load_lands_exactly_once_with_metrics_to_match(env: SinkEnv) -> None:
    written = await run_loadgen(env.settings, LoadgenConfig(seed=10, transactions=7500))
    changes = sum(change.total for change in written.tables.values())
    assert changes >= 20_000
    metrics = Metrics(CollectorRegistry())
    async with running_sink(env, metrics=metrics) as sink:
        await wait_until_caught_up(env, expected_records(written), timeout_s=300)
        # Freshness right when the sink caught up: now minus the newest committed event.
        freshness = metrics.registry.get_sample_value(
            "bv_event_freshness_seconds", {"pipeline": "medallion"}
        )
        await asyncio.sleep(5.5)  # one lag report after the last commit
    counts = await assert_exactly_once(env)
    assert counts["bronze"] == changes
    registry = metrics.registry
    processed = registry.get_sample_value(
        "bv_data_records_processed_total", {"pipeline": "medallion"}
    )
    assert processed == sink.stats.consumed == expected_records(written)
    # The same figure as a scraper sees it at /metrics.
    with MetricsServer(registry, host="127.0.0.1", port=0) as server:
        async with httpx.AsyncClient() as client:
            scraped = (await client.get(server.url, timeout=5)).text
    assert f'bv_data_records_processed_total{{pipeline="medallion"}} {float(processed)}' in scraped
    lags = [
        sample.value
        for family in registry.collect()
        if family.name == "bv_consumer_lag_records"
        for sample in family.samples
    ]
    assert lags
    assert all(lag == 0 for lag in lags)
    assert freshness is not None
    assert freshness < env.settings.monitoring.freshness_slo_s


async def test_stopping_and_restarting_resumes_from_the_stored_offsets(env: SinkEnv) -> None:
    one = await run_loadgen(env.settings, LoadgenConfig(seed=12, transactions=150))
    async with running_sink(env) as first:
        await wait_until_caught_up(env, expected_records(one))
    two = await run_loadgen(env.settings, LoadgenConfig(seed=13, transactions=150))
    async with running_sink(env, "w2") as second:
        await wait_until_caught_up(env, expected_records(one, two))
    await assert_exactly_once(env)
    assert first.stats.consumed + second.stats.consumed == sum(
        o.bronze_rows + o.dead_letters + o.filtered
        for o in (*first.stats.outcomes, *second.stats.outcomes)
    )


async def test_a_zombie_batch_after_another_claim_rolls_back(env: SinkEnv) -> None:
    connection = await connect(env.settings.postgres)
    try:
        zombie = OffsetStore(env.group, "zombie")
        usurper = OffsetStore(env.group, "usurper")
        topic = env.topics[0]
        stale = await zombie.claim(connection, topic, 0)
        await usurper.claim(connection, topic, 0)  # a rebalance gave the partition away
        letter = dead_letter(
            RecordOrigin(topic, 0, 0, None, b"x"), FramingError("poison for the test")
        )
        plan = plan_batch([ConsumedRecord(topic, 0, 0, letter)], "test")
        writer = MedallionWriter(zombie, RulesQualityGate(env.settings))
        await writer.prepare(connection)
        with pytest.raises(PartitionFencedError):
            await writer.write(connection, stale, plan)
        batches = await connection.fetchval(
            "SELECT count(*) FROM ops.sink_batches WHERE group_id = $1", env.group
        )
        assert batches == 0  # the accounting row rolled back with everything else
        assert (await usurper.read(connection, topic, 0)) == (0, 2)
    finally:
        await connection.close()


async def test_poison_records_are_dead_lettered_and_the_pipeline_goes_on(env: SinkEnv) -> None:
    topic = env.settings.topics.cdc_topic("customers")
    one = await run_loadgen(env.settings, LoadgenConfig(seed=14, transactions=60))

    async def published() -> bool:  # Debezium made the topic with its partitions
        return sum(high_watermarks(env).values()) >= expected_records(one)

    await eventually(published, timeout_s=60, what="the first load on Kafka")
    failures: list[object] = []
    producer = Producer({"bootstrap.servers": env.settings.kafka.bootstrap_servers})
    for partition, key, value in (
        (0, b"\x00garbage-key", b"\xde\xad\xbe\xef not avro"),
        (1, None, b"\x00\x7f\xff\xff\xf0unknown-schema-id"),
    ):
        producer.produce(
            topic,
            key=key,
            value=value,
            partition=partition,
            on_delivery=lambda error, _message: failures.append(error) if error else None,
        )
    assert producer.flush(10) == 0
    assert failures == []
    two = await run_loadgen(env.settings, LoadgenConfig(seed=15, transactions=60))
    metrics = Metrics(CollectorRegistry())
    dlq_before = dlq_total(topic)
    async with running_sink(env, metrics=metrics) as sink:
        await wait_until_caught_up(env, expected_records(one, two) + 2)
    assert sink.stats.dead_letters == 2
    letters = read_topics(
        env.settings.kafka.bootstrap_servers,
        [f"{topic}.dlq"],
        done=lambda read: len(read) >= 2,
        timeout_s=30,
    )
    values = sorted(m.value() or b"" for m in letters)
    assert values == sorted(
        [b"\xde\xad\xbe\xef not avro", b"\x00\x7f\xff\xff\xf0unknown-schema-id"]
    )
    for letter in letters:
        headers = dict(letter.headers() or [])
        assert headers["bv.origin.topic"] == topic.encode()
        assert headers["bv.error.class"]
        assert "bv.origin.offset" in headers
    await assert_exactly_once(env, dead_lettered=2)
    # Metrics: the DLQ counter (process-wide, published by the dead-letter producer) and the
    # pipeline's error counter, both labelled by error class.
    reasons = {dict(letter.headers() or [])["bv.error.class"].decode() for letter in letters}
    assert dlq_total(topic) - dlq_before == 2
    errors = sum(
        metrics.registry.get_sample_value(
            "bv_data_processing_errors_total", {"pipeline": "medallion", "error_type": r}
        )
        or 0
        for r in reasons
    )
    assert errors == 2
    await asyncio.sleep(0)


async def test_the_oltp_correlation_id_reaches_bronze_and_the_batch_log_line(
    env: SinkEnv,
) -> None:
    seed = await run_loadgen(env.settings, LoadgenConfig(seed=16, transactions=10))
    db = await connect(env.settings.postgres)
    try:
        async with db.transaction():
            await db.execute("SET LOCAL bv.correlation_id = 'trace-7f3a9c'")
            customer = await db.fetchval(
                "INSERT INTO customers (email, first_name, last_name, country) "
                "VALUES ('traced@example.com', 'Tra', 'Ced', 'DE') RETURNING customer_id"
            )
        stream = io.StringIO()
        handler = configure_logging("INFO", stream)
        try:
            async with running_sink(env):
                await wait_until_caught_up(env, expected_records(seed) + 1)
        finally:
            logging.getLogger("bitvelocity").removeHandler(handler)
        trace = await db.fetchval(
            "SELECT trace_id FROM bronze.customers WHERE (raw_payload->'after'->>'customer_id')"
            "::bigint = $1",
            customer,
        )
        assert trace == "trace-7f3a9c"
        lines = [orjson.loads(line) for line in stream.getvalue().splitlines() if line]
        batch_lines = [
            line
            for line in lines
            if line["message"].startswith("committed")
            and "trace-7f3a9c" in line.get("trace_ids", [])
        ]
        assert len(batch_lines) == 1
        assert env.settings.topics.cdc_topic("customers") in batch_lines[0]["message"]
    finally:
        await db.close()


async def test_every_write_lane_is_open_and_warmed_before_the_first_batch(env: SinkEnv) -> None:
    """Issue 18: a lane opened on first use made its first batch wait for the connection
    and for the backend to load the tables' catalog. ``open_all`` opens and prepares each
    lane once; the warm-up's statements roll back and leave the connection idle."""
    writer = MedallionWriter(OffsetStore(env.group, "warm"), RulesQualityGate(env.settings))
    prepared: list[asyncpg.Connection] = []

    async def prepare(connection: asyncpg.Connection) -> None:
        await writer.prepare(connection)
        prepared.append(connection)

    connections = SinkConnections(env.settings, None, lanes=2, prepare=prepare)
    try:
        await connections.open_all()
        assert len(prepared) == 2
        assert prepared[0] is not prepared[1]
        assert [await connections.writer(slot) for slot in (0, 1)] == prepared  # not reopened
        for connection in prepared:
            assert not connection.is_in_transaction()
    finally:
        connections.close()
