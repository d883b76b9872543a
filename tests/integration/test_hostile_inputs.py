"""Hostile inputs reach bronze intact or the DLQ, never SQL text, and the pipeline goes on.

Through the real pipeline (OLTP -> Debezium -> Kafka -> sink): SQL meta-characters in keys
and values, a very long string, JSON-looking and deeply nested text, Unicode oddities land in
bronze byte for byte and silver equals the source (I3). Written straight onto the CDC topic:
NUL bytes, invalid UTF-8, deeply nested JSON, a near-1 MB value, SQL in the key, a valid
Avro change whose string holds a NUL (which PostgreSQL cannot store), a change naming a
table like an injection: each becomes one dead letter and I1/I6 still hold. Quality samples
of the hostile rows are masked, and no session the pipeline opens is a superuser.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from admin.capture import read_topics
from config.settings import Settings
from oltp.loadgen import LoadgenConfig, run_loadgen
from serdes.avro import parse_schema, read_body, write_body
from serdes.dead_letters import ERROR_CLASS, header
from serdes.framing import frame, unframe
from serdes.registry import RegistryClient
from sinks.postgres.connection import connect
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

SQL_META = "Robert'); DROP TABLE bronze.customers; DROP TABLE silver.customers; --"
HOSTILE_NAMES = [
    SQL_META,
    "$1 $$ $body$ \\x00 \\u0000 %s %(x)s {} ; ' \" ` \\",
    "x" * 200_000,
    "[" * 5_000 + "]" * 5_000,
    '{"a": ' * 2_000 + "1" + "}" * 2_000,
    "\u202eevil\u200b\ufeff e\u0301 🙂 \U0010fffd",
    "\\.\n\\N\r\t",  # COPY's own escapes: end-of-data marker, NULL marker, row/field breaks
]


@pytest.fixture
def env(settings: Settings) -> Iterator[SinkEnv]:
    with sink_environment(settings, batch_max_records=100) as environment:
        yield environment


async def insert_hostile_customers(env: SinkEnv) -> list[int]:
    connection = await connect(env.settings.postgres, env.database)
    try:
        ids = []
        for number, name in enumerate(HOSTILE_NAMES):
            ids.append(
                await connection.fetchval(
                    "INSERT INTO public.customers (email, first_name, last_name, country) "
                    "VALUES ($1, $2, $3, 'US') RETURNING customer_id",
                    f"{SQL_META}{number}@x'--.io",
                    name,
                    name[::-1],
                )
            )
        return ids
    finally:
        await connection.close()


def a_change(env: SinkEnv, topic: str) -> tuple[bytes | None, int, Any, dict[str, Any]]:
    """A real insert or update from ``topic``: key, schema id, parsed schema, envelope."""
    messages = read_topics(
        env.settings.kafka.bootstrap_servers, [topic], done=lambda read: len(read) >= 5,
        timeout_s=30,
    )  # fmt: skip
    with RegistryClient(env.settings.registry) as registry:
        for message in messages:
            if message.value() is None:
                continue
            framed = unframe(message.value())
            schema = parse_schema(registry.schema_by_id(framed.schema_id))
            envelope = read_body(framed.body, schema)
            if envelope.get("after") is not None:
                return message.key(), framed.schema_id, schema, envelope
    raise AssertionError(f"no insert or update on {topic}")


def hostile_changes(env: SinkEnv, topic: str) -> list[tuple[bytes | None, bytes]]:
    """Valid Avro changes that must still be refused: a NUL in a string (PostgreSQL cannot
    store it) and a source table named like an injection (no silver table has that name)."""
    key, schema_id, schema, envelope = a_change(env, topic)
    nul = {**envelope, "after": {**envelope["after"], "first_name": "nul\x00inside"}}
    table = {**envelope, "source": {**envelope["source"], "table": 'x"; DROP TABLE y; --'}}
    return [(key, frame(schema_id, write_body(schema, e))) for e in (nul, table)]


async def sessions_on(env: SinkEnv) -> dict[str, bool]:
    """Login -> is superuser, of every client session on the pipeline's database but ours."""
    connection = await connect(env.settings.postgres, env.database)
    try:
        rows = await connection.fetch(
            "SELECT DISTINCT a.usename, r.rolsuper FROM pg_stat_activity AS a "
            "JOIN pg_roles AS r ON r.rolname = a.usename "
            "WHERE a.datname = $1 AND a.pid <> pg_backend_pid() "
            "AND a.backend_type = 'client backend'",
            env.database,
        )
        return {r["usename"]: r["rolsuper"] for r in rows}
    finally:
        await connection.close()


async def test_hostile_values_land_intact_or_in_the_dlq_and_never_in_sql(env: SinkEnv) -> None:
    topic = env.settings.topics.cdc_topic("customers")
    load = await run_loadgen(env.settings, LoadgenConfig(seed=21, transactions=20))
    ids = await insert_hostile_customers(env)
    expected = expected_records(load) + len(ids)

    async def published() -> bool:
        return sum(high_watermarks(env).values()) >= expected

    await eventually(published, timeout_s=90, what="the hostile rows on Kafka")
    poison: list[tuple[bytes | None, bytes]] = [
        (b"\x00\x00\x00", b"\x00" * 64),
        (b"\xff\xfe\xfd", b"\x00\x00\x00\x00\x01\xc3\x28\xa0\xa1\xe2\x28\xa1"),  # bad UTF-8
        (b"[[[[", b"[" * 100_000),
        (b"'; DROP TABLE ops.consumer_offsets; --", b"\x00\x00\x00\x00\x01" + b"\xff" * 900_000),
        *hostile_changes(env, topic),
    ]
    failures: list[object] = []
    producer = Producer(
        {"bootstrap.servers": env.settings.kafka.bootstrap_servers, "message.max.bytes": 1_000_000}
    )
    for key, value in poison:
        producer.produce(
            topic, key=key, value=value, partition=0,
            on_delivery=lambda error, _m: failures.append(error) if error else None,
        )  # fmt: skip
    assert producer.flush(30) == 0
    assert failures == []

    async with running_sink(env) as sink:
        await wait_until_caught_up(env, expected + len(poison), timeout_s=180)
        logins = await sessions_on(env)
    # No session on the pipeline's database, sink or Debezium, is a superuser.
    pg = env.settings.postgres
    assert pg.worker_user in logins
    assert not [user for user, is_super in logins.items() if is_super], logins
    assert sink.stats.dead_letters == len(poison)
    letters = read_topics(
        env.settings.kafka.bootstrap_servers, [f"{topic}.dlq"],
        done=lambda read: len(read) >= len(poison), timeout_s=30,
    )  # fmt: skip
    assert sorted(m.value() or b"" for m in letters) == sorted(v for _, v in poison)
    reasons = {header(list(m.headers() or []), ERROR_CLASS) for m in letters}
    assert {"UnstorableValueError", "UnknownTableError"} <= reasons

    await assert_exactly_once(env, dead_lettered=len(poison))  # I1, I2, I3 (silver), I6
    connection = await connect(env.settings.postgres, env.database)
    try:
        for customer_id, name in zip(ids, HOSTILE_NAMES, strict=True):
            stored = await connection.fetchrow(
                "SELECT raw_payload -> 'after' ->> 'first_name' AS first_name, "
                "raw_payload -> 'after' ->> 'last_name' AS last_name FROM bronze.customers "
                "WHERE (raw_payload -> 'after' ->> 'customer_id')::bigint = $1",
                customer_id,
            )
            assert stored is not None, f"customer {customer_id} missing in bronze"
            assert (stored["first_name"], stored["last_name"]) == (name, name[::-1])
        # The hostile emails fail the email PATTERN rule: their samples are masked.
        samples = await connection.fetch(
            "SELECT r.sample_failures::text FROM ops.data_quality_results AS r "
            "JOIN ops.data_quality_rules AS q USING (rule_id) "
            "WHERE q.table_name = 'customers' AND q.column_name = 'email' AND r.failed_count > 0"
        )
        text = " ".join(row[0] for row in samples)
        assert "R***@x***.io" in text
        assert "DROP TABLE" not in text
        for table in ("bronze.customers", "silver.customers", "ops.consumer_offsets"):
            assert await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", table), table
    finally:
        await connection.close()
