"""The JVM alternative: Debezium's JDBC sink connector upserting the same topics into PostgreSQL.

``io.debezium:debezium-connector-jdbc`` (the same Debezium version as our source connector)
is an optional stack artifact: resolved from Maven Central into Connect's plugin path the
first time this scenario runs, after which Connect is restarted once to load it (a default
``stack up`` neither downloads nor loads it). The connector reads the same Avro records
through the same Apicurio converter, one task (one worker process, like ours), in upsert
mode keyed by the record key, into a fresh database.

Rate: from the first row in PostgreSQL to the moment the connector's committed offsets
reach the end of the input (Connect commits every second, so up to a second late). CPU and
RSS are the Connect JVM's over that span (``/proc``).
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
from confluent_kafka import Consumer, TopicPartition

from admin.connectors import ConnectClient, converter_config
from bench.harness import BenchContext, Row, scenario
from bench.peers.proc import cpu_seconds, peak_rss_mb, rss_mb
from config.errors import ArtifactResolutionError
from config.settings import Settings
from sinks.postgres.connection import connect
from stack.artifacts import jdbc_sink_artifact, resolve
from stack.connect_service import postgres_secrets_file
from stack.manager import Stack
from stack.versions import DEBEZIUM_VERSION

JDBC_SINK_CLASS = "io.debezium.connector.jdbc.JdbcSinkConnector"
ARTIFACT = "io.debezium:debezium-connector-jdbc"


def loaded_version(settings: Settings) -> str | None:
    """The JDBC sink version Connect has loaded, or None."""
    response = httpx.get(f"{settings.connect.url}/connector-plugins", timeout=10)
    response.raise_for_status()
    for plugin in response.json():
        if plugin.get("class") == JDBC_SINK_CLASS:
            return str(plugin.get("version"))
    return None


def ensure_jdbc_plugin(settings: Settings, version: str) -> None:
    """Make Connect load the JDBC sink ``version``: resolve it, restart Connect once."""
    if loaded_version(settings) == version:
        return
    stack = Stack(settings)
    connect_service = stack.service("connect")
    if connect_service.pid() is None:
        raise ArtifactResolutionError(
            "the JDBC sink is not loaded and this stack's Connect was not started from "
            f"{settings.stack.state_dir}: cannot restart it to load the plugin"
        )

    def progress(message: str) -> None:
        print(f"[bench] {message}", flush=True)

    resolve(connect_service.paths.jvm, jdbc_sink_artifact(version), progress)
    stack.down(progress, ["connect"])
    stack.up(progress, ["connect"])
    deadline = time.monotonic() + 120
    while loaded_version(settings) != version:
        if time.monotonic() > deadline:
            raise ArtifactResolutionError(
                f"Connect restarted but does not list the JDBC sink {version}"
            )
        time.sleep(1)


def jdbc_sink_config(settings: Settings, topics: list[str], database: str) -> dict[str, str]:
    pg = settings.postgres
    secrets = postgres_secrets_file(settings.stack.state_dir)
    return {
        "connector.class": JDBC_SINK_CLASS,
        "tasks.max": "1",
        "topics": ",".join(topics),
        "connection.url": f"jdbc:postgresql://{pg.host}:{pg.port}/{database}",
        "connection.username": pg.admin_user,
        "connection.password": f"${{file:{secrets}:admin_password}}",
        "insert.mode": "upsert",
        "primary.key.mode": "record_key",
        "delete.enabled": "true",
        "schema.evolution": "basic",
        "collection.name.format": "jdbc_${source.table}",
        **converter_config(settings, "avro"),
    }


def committed(
    bootstrap: str, group: str, partitions: list[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=10)
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in offsets}


@scenario("jdbc", "Debezium JDBC sink connector (JVM) upserting the same topics", heavy=True)
async def jdbc(context: BenchContext) -> list[Row]:
    settings = context.settings
    wanted = DEBEZIUM_VERSION
    missing = ""
    try:
        await asyncio.to_thread(ensure_jdbc_plugin, settings, wanted)
    except ArtifactResolutionError:
        missing = f"{ARTIFACT}:{wanted} is not on Maven Central"
        fallback = context.options.jdbc_fallback_version
        if not fallback:
            return [
                Row("jdbc", "Debezium JDBC sink (JVM)", None, status="unavailable", note=missing)
            ]
        try:
            await asyncio.to_thread(ensure_jdbc_plugin, settings, fallback)
        except ArtifactResolutionError as exc:
            note = f"{missing}; {fallback}: {str(exc)[:200]}"
            return [Row("jdbc", "Debezium JDBC sink (JVM)", None, status="unavailable", note=note)]
        wanted = fallback
    database = await context.warehouses.fresh("jdbc")
    name = f"{settings.kafka.consumer_group}-jdbc"
    group = f"connect-{name}"
    context.groups.append(group)

    def remove() -> None:
        with ConnectClient(settings) as client:
            client.delete(name)

    context.cleanups.append(remove)
    pid = Stack(settings).service("connect").pid()
    marks = context.cdc.marks
    timeout = context.options.peer_timeout_s
    with ConnectClient(settings) as client:
        client.put(name, jdbc_sink_config(settings, context.topics, database))
    connection = await connect(settings.postgres, database)
    try:
        first_row = await _first_row(connection, timeout)
        cpu_before = cpu_seconds(pid) if pid else None
        deadline = time.monotonic() + timeout
        done = 0
        while True:
            offsets = await asyncio.to_thread(committed, context.bootstrap, group, list(marks))
            done = sum(min(offsets.get(k, 0), v) for k, v in marks.items())
            if done >= context.data_records or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        finished = time.perf_counter()
        rows = 0
        for table in await _tables(connection):
            rows += await connection.fetchval(f'SELECT count(*) FROM public."{table}"')  # noqa: S608
    finally:
        await connection.close()
    status = await asyncio.to_thread(_status, settings, name)
    seconds = finished - first_row
    figures: dict[str, object] = {
        "connector_state": status,
        "table_rows": int(rows),
        "jdbc_sink_version": wanted,
    }
    if missing:
        figures["jdbc_sink_missing"] = missing
    if pid and cpu_before is not None:
        figures["cpu_s_per_1k_records"] = round(
            (cpu_seconds(pid) - cpu_before) / max(done, 1) * 1000, 4
        )
        figures["rss_mb_connect_jvm"] = round(rss_mb(pid), 1)
        figures["peak_rss_mb"] = round(peak_rss_mb(pid), 1)  # the JVM's, since it started
    partial = done < context.data_records
    return [
        Row(
            "jdbc",
            f"Debezium JDBC sink {wanted} (JVM), upsert, 1 task",
            done / seconds if seconds > 0 else None,
            records=done,
            seconds=seconds,
            figures=figures,
            status="partial" if partial else "ok",
            note=(f"stopped after {timeout:.0f} s; " if partial else "first row -> committed; ")
            + (f"{missing}, ran {wanted}" if missing else ""),
        )
    ]


async def _first_row(connection: asyncpg.Connection, limit_s: float) -> float:
    """When the connector's first row is visible (it creates its tables on first write)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        for table in await _tables(connection):
            if await connection.fetchval(f'SELECT EXISTS (SELECT 1 FROM public."{table}")'):  # noqa: S608
                return time.perf_counter()
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the JDBC sink wrote no row in {limit_s:.0f} s")


async def _tables(connection: asyncpg.Connection) -> list[str]:
    """The tables the connector created (``jdbc_<source table>``)."""
    rows = await connection.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relname LIKE 'jdbc%' AND c.relkind = 'r'"
    )
    return [str(row[0]) for row in rows]


def _status(settings: Settings, name: str) -> str:
    with ConnectClient(settings) as client:
        status = client.status(name) or {}
    tasks = status.get("tasks") or [{}]
    return str(tasks[0].get("state", "unknown"))
