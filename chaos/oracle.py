"""The chaos oracle: invariants I1-I7 (DESIGN.md section 11) judged from outside the pipeline.

Nothing here imports the pipeline's agents, sinks or tables. The expectations come from
plain SQL over the OLTP source (``public.*``, the source of truth), from reading the CDC
and dead-letter topics back with a plain consumer, and from Redis read as plain hashes and
strings. What the pipeline wrote (bronze, silver, gold, ``ops.consumer_offsets``, Redis) is
only ever the thing judged. The contract it judges by is spelled out here again on
purpose (keys, renames, Redis field formats), so a change to the pipeline that breaks the
contract shows up as a violation instead of silently moving the oracle with it.

Run it after quiescence: the load stopped and the workers caught up.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

import asyncpg
import redis.asyncio as redis_async
from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from admin.capture import partition_high_watermarks
from chaos.expectations import (
    FEATURE_COLUMNS,
    expected_features,
    expected_hourly,
    expected_late_orders,
)
from config.settings import Settings

#: Source table -> (primary key columns, source column -> silver column renames).
SILVER_CONTRACT: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "categories": (("category_id",), {}),
    "customers": (("customer_id",), {}),
    "products": (("product_id",), {}),
    "orders": (("order_id", "created_date"), {"created_date": "order_date"}),
    "order_items": (("order_item_id",), {}),
    "payments": (("payment_id",), {}),
}
#: Kinds of L2 cache entry -> the source table and id column behind them.
CACHE_CONTRACT = {
    "product": ("products", "product_id"),
    "category": ("categories", "category_id"),
    "customer": ("customers", "customer_id"),
}
INVARIANTS = {
    "I1": "bronze holds exactly one row per CDC record consumed",
    "I2": "stored offsets and written rows move together",
    "I3": "silver equals the OLTP source row for row",
    "I4": "gold hourly revenue and customer features equal the SQL recomputation"
    " (late changes on late-events instead)",
    "I5": "Redis features and caches converge to PostgreSQL",
    "I6": "bronze + DLQ + filtered = consumed",
    "I7": "no stall longer than the outage plus backoff",
}

RecordId = tuple[str, int, int]  # topic, partition, offset


@dataclass(frozen=True)
class OracleTarget:
    """What to judge: one pipeline's settings (database, topics, group, Redis prefixes)."""

    settings: Settings
    #: The medallion sink's consumer group (its rows in ``ops.consumer_offsets``).
    group: str
    #: I7: the longest stall allowed (the longest injected outage plus backoff).
    allowed_stall_s: float = 60.0
    #: I7: worker processes that exited by themselves during the run (the runner restarts
    #: them as a supervisor would, but the pipeline had stopped: a liveness violation).
    worker_exits: int = 0
    #: I4: features are recomputed as of this time (default: the newest ``as_of`` in gold).
    as_of: datetime | None = None
    #: Tables the pipeline captures (all of the contract unless narrowed).
    tables: tuple[str, ...] = tuple(SILVER_CONTRACT)


@dataclass
class Verdict:
    """Figures for the table, and every violation found (invariant, what is wrong)."""

    figures: dict[str, object] = field(default_factory=dict)
    violations: list[tuple[str, str]] = field(default_factory=list)

    def violate(self, invariant: str, detail: str) -> None:
        self.violations.append((invariant, detail))

    @property
    def passed(self) -> bool:
        return not self.violations

    @property
    def broken(self) -> list[str]:
        return sorted({invariant for invariant, _ in self.violations})


@dataclass(frozen=True)
class CdcRecord:
    tombstone: bool
    timestamp_ms: int


# -- reading the topics back ------------------------------------------------------------------
def _read_all(bootstrap: str, topics: Iterable[str]) -> list[tuple[RecordId, Message]]:
    """Every record of ``topics`` up to the high watermarks as they are now."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bv-chaos-oracle", "enable.auto.commit": False}
    )
    try:
        marks = partition_high_watermarks(
            consumer, AdminClient({"bootstrap.servers": bootstrap}), topics
        )
        wanted = {k: v for k, v in marks.items() if v > 0}
        consumer.assign([TopicPartition(t, p, 0) for t, p in wanted])
        out: list[tuple[RecordId, Message]] = []
        position = dict.fromkeys(wanted, 0)
        idle = 0
        while any(position[k] < wanted[k] for k in wanted) and idle < 120:
            batch = consumer.consume(num_messages=5000, timeout=0.5)
            idle = 0 if batch else idle + 1
            for message in batch:
                if message.error():
                    continue  # partition EOF and the like: the watermarks bound the read
                key = (message.topic() or "", message.partition() or 0, message.offset() or 0)
                position[key[:2]] = key[2] + 1
                out.append((key, message))
        short = {k: (position[k], v) for k, v in wanted.items() if position[k] < v}
        if short:
            raise RuntimeError(f"could not read the topics to their ends: {short}")
        return out
    finally:
        consumer.close()


def read_cdc(bootstrap: str, topics: Iterable[str]) -> dict[RecordId, CdcRecord]:
    """Every CDC record -> whether it is a tombstone, and its Kafka timestamp."""
    records = {}
    for key, message in _read_all(bootstrap, topics):
        records[key] = CdcRecord(message.value() is None, message.timestamp()[1])
    return records


def read_dead_letter_origins(bootstrap: str, topics: Iterable[str]) -> Counter[RecordId]:
    """Origins named by the dead letters (a crash may publish one twice: counted by origin)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    dlq = [t for t in topics if t in existing]
    origins: Counter[RecordId] = Counter()
    if not dlq:
        return origins
    for _, message in _read_all(bootstrap, dlq):
        headers = message.headers() or []
        pairs = headers.items() if isinstance(headers, dict) else headers
        named = {k: _text(v) for k, v in pairs}
        try:
            origin = (
                named["bv.origin.topic"],
                int(named["bv.origin.partition"]),
                int(named["bv.origin.offset"]),
            )
        except (KeyError, ValueError):
            origin = ("<dead letter without origin headers>", -1, -1)
        origins[origin] += 1
    return origins


LateOrder = tuple[int, datetime, str]  # order id, window start, currency


def read_late_records(bootstrap: str, topic: str) -> list[tuple[str, dict]]:
    """Every record of ``late-events`` as (key, JSON value); none when the topic is absent."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic not in admin.list_topics(timeout=10).topics:
        return []
    records = []
    for _, message in _read_all(bootstrap, [topic]):
        try:
            value = json.loads(message.value() or b"")
        except ValueError:
            value = {}
        records.append((_text(message.key()), value if isinstance(value, dict) else {}))
    return records


def read_late_events(bootstrap: str, topic: str) -> tuple[set[LateOrder], int]:
    """The orders named on ``late-events`` (JSON values, as DESIGN.md section 4 has them:
    the order and the window it missed), and the number of records."""
    named: set[LateOrder] = set()
    records = read_late_records(bootstrap, topic)
    for _, value in records:
        try:
            named.add(
                (
                    int(value["order_id"]),
                    datetime.fromisoformat(value["window_start"]),
                    str(value["currency"]),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue  # not a late event of the contract: it names no order
    return named, len(records)


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


# -- the checks -----------------------------------------------------------------------------
async def judge(target: OracleTarget) -> Verdict:
    """Check I1-I7; every figure of the report and every violation found."""
    settings = target.settings
    topics = [settings.topics.cdc_topic(t) for t in target.tables]
    bootstrap = settings.kafka.bootstrap_servers
    verdict = Verdict()
    cdc = read_cdc(bootstrap, topics)
    dead = read_dead_letter_origins(bootstrap, [settings.topics.dlq_topic(t) for t in topics])
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bv-chaos-oracle"})
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        marks = partition_high_watermarks(consumer, admin, topics)
    finally:
        consumer.close()
    pg = settings.postgres
    connection = await asyncpg.connect(
        host=pg.host,
        port=pg.port,
        user=pg.admin_user,
        password=pg.admin_password.get_secret_value(),
        database=pg.database,
    )
    try:
        bronze = await _bronze(connection, target.tables)
        _check_accounting(verdict, cdc, bronze, dead)
        await _check_offsets(verdict, connection, target.group, marks, cdc, bronze, dead)
        await _check_silver(verdict, connection, target.tables)
        as_of = await _check_gold(verdict, connection, target.as_of, settings)
        await _check_redis(verdict, connection, settings, as_of)
        _check_stall(verdict, cdc, bronze, target.allowed_stall_s)
        verdict.figures["worker exits"] = target.worker_exits
        if target.worker_exits:
            verdict.violate(
                "I7", f"{target.worker_exits} worker process(es) exited by themselves under faults"
            )
    finally:
        await connection.close()
    return verdict


async def _bronze(
    connection: asyncpg.Connection, tables: Iterable[str]
) -> dict[RecordId, list[datetime]]:
    rows: dict[RecordId, list[datetime]] = {}
    for table in tables:
        for r in await connection.fetch(
            f"SELECT source_topic, source_partition, source_offset, ingested_at FROM bronze.{table}"
        ):
            rows.setdefault((r[0], r[1], r[2]), []).append(r[3])
    return rows


def _check_accounting(
    verdict: Verdict,
    cdc: dict[RecordId, CdcRecord],
    bronze: dict[RecordId, list[datetime]],
    dead: Counter[RecordId],
) -> None:
    """I1 (one bronze row per data record) and I6 (every record accounted for, once)."""
    filtered = {k for k, r in cdc.items() if r.tombstone}
    figures = verdict.figures
    figures["records consumed"] = len(cdc)
    figures["bronze rows"] = sum(len(v) for v in bronze.values())
    figures["DLQ"] = len(dead)
    figures["filtered"] = len(filtered)
    twice = [k for k, v in bronze.items() if len(v) > 1]
    if twice:
        verdict.violate(
            "I1", f"{len(twice)} records have more than one bronze row, e.g. {twice[0]}"
        )
    unknown = set(bronze) - set(cdc)
    if unknown:
        verdict.violate("I1", f"{len(unknown)} bronze rows name no record on Kafka")
    data = {k for k, r in cdc.items() if not r.tombstone}
    missing = data - set(bronze) - set(dead)
    if missing:
        verdict.violate(
            "I1", f"{len(missing)} records in neither bronze nor DLQ, e.g. {min(missing)}"
        )
    both = set(bronze) & set(dead)
    if both:
        verdict.violate("I6", f"{len(both)} records both in bronze and dead-lettered")
    stray = set(dead) - data
    if stray:
        verdict.violate("I6", f"{len(stray)} dead letters name no data record, e.g. {min(stray)}")
    if len(set(bronze) | set(dead) | filtered) != len(cdc) or missing or unknown:
        verdict.violate(
            "I6",
            f"bronze {len(bronze)} + DLQ {len(dead)} + filtered {len(filtered)}"
            f" != consumed {len(cdc)}",
        )


async def _check_offsets(
    verdict: Verdict,
    connection: asyncpg.Connection,
    group: str,
    marks: dict[tuple[str, int], int],
    cdc: dict[RecordId, CdcRecord],
    bronze: dict[RecordId, list[datetime]],
    dead: Counter[RecordId],
) -> None:
    """I2: each stored offset is the high watermark; rows exist below it and none above."""
    stored = {
        (r["topic"], r["partition"]): r["next_offset"]
        for r in await connection.fetch(
            "SELECT topic, partition, next_offset FROM ops.consumer_offsets WHERE group_id = $1",
            group,
        )
    }
    lagging = {
        k: (stored.get(k, 0), v) for k, v in marks.items() if v > 0 and stored.get(k, 0) != v
    }
    if lagging:
        k = min(lagging)
        verdict.violate(
            "I2", f"{len(lagging)} stored offsets differ from Kafka's end, e.g. {k}: {lagging[k]}"
        )
    beyond = [k for k in bronze if k[2] >= stored.get(k[:2], 0)]
    if beyond:
        verdict.violate("I2", f"{len(beyond)} bronze rows at or past the stored offset")
    accounted = set(bronze) | set(dead) | {k for k, r in cdc.items() if r.tombstone}
    gaps = [k for k in cdc if k[2] < stored.get(k[:2], 0) and k not in accounted]
    if gaps:
        verdict.violate(
            "I2", f"{len(gaps)} records below a stored offset were never written, e.g. {min(gaps)}"
        )


async def _check_silver(
    verdict: Verdict, connection: asyncpg.Connection, tables: Iterable[str]
) -> None:
    """I3: every source row in silver with equal values; silver rows gone from the source
    are marked hard-deleted."""
    mismatches = 0
    for table in tables:
        key, renames = SILVER_CONTRACT[table]
        source_columns = await column_names(connection, "public", table)
        silver_columns = set(await column_names(connection, "silver", table))
        pairs = [
            (c, renames.get(c, c)) for c in source_columns if renames.get(c, c) in silver_columns
        ]
        on = " AND ".join(f"s.{c} = v.{renames.get(c, c)}" for c in key)
        first_s, first_v = key[0], renames.get(key[0], key[0])
        src = ", ".join(f"s.{a}" for a, _ in pairs)
        sil = ", ".join(f"v.{b}" for _, b in pairs)
        rows = await connection.fetch(
            f"SELECT s.{first_s} AS source_key, v.{first_v} AS silver_key, v.hard_deleted "
            f"FROM public.{table} s FULL JOIN silver.{table} v ON {on} "
            f"WHERE (s.{first_s} IS NULL AND NOT v.hard_deleted) OR v.{first_v} IS NULL "
            f"OR (s.{first_s} IS NOT NULL AND (v.hard_deleted "
            f"OR ROW({src}) IS DISTINCT FROM ROW({sil})))"
        )
        if rows:
            mismatches += len(rows)
            sample = rows[0]
            key_value = sample["source_key"]
            if key_value is None:
                key_value = sample["silver_key"]
            verdict.violate(
                "I3",
                f"silver.{table}: {len(rows)} rows differ from public.{table},"
                f" e.g. key {key_value}",
            )
    verdict.figures["silver mismatches"] = mismatches


async def column_names(connection: asyncpg.Connection, schema: str, table: str) -> list[str]:
    return [
        r[0]
        for r in await connection.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 "
            "AND table_name = $2 ORDER BY ordinal_position",
            schema,
            table,
        )
    ]


async def _check_gold(
    verdict: Verdict, connection: asyncpg.Connection, as_of: datetime | None, settings: Settings
) -> datetime | None:
    """I4: hourly revenue to the cent, and features as of ``as_of``. Windows and customers
    the source no longer has must have been retracted to zero. Retention: each window
    holds its orders as they stood before it left retention, and every order changed
    later is on ``late-events`` (docs/decisions/0020). Returns the ``as_of`` judged."""
    retention, size = settings.windows.retention, settings.windows.hourly_revenue_size
    await _check_late_events(verdict, connection, settings)
    await _check_hourly_revenue(verdict, connection, retention, size)
    if as_of is None:
        as_of = await connection.fetchval("SELECT max(as_of) FROM gold.customer_features")
    if as_of is None:
        verdict.figures["feature mismatches"] = 0
        return None
    await _check_features(verdict, connection, as_of)
    return as_of


async def _check_late_events(
    verdict: Verdict, connection: asyncpg.Connection, settings: Settings
) -> None:
    """I4: every order changed beyond retention is named on ``late-events``."""
    retention, size = settings.windows.retention, settings.windows.hourly_revenue_size
    late_wanted = await expected_late_orders(connection, retention, size)
    late_named, late_records = read_late_events(
        settings.kafka.bootstrap_servers, settings.topics.late_events
    )
    missing = late_wanted - late_named
    verdict.figures["late orders (source)"] = len(late_wanted)
    verdict.figures["late-events records"] = late_records
    if missing:
        order = min(missing)
        verdict.violate(
            "I4",
            f"{len(missing)} orders changed beyond retention are not on late-events, e.g."
            f" order {order[0]} (window {order[1].isoformat()} {order[2]})",
        )


async def _check_hourly_revenue(
    verdict: Verdict, connection: asyncpg.Connection, retention: timedelta, size: timedelta
) -> None:
    """I4: gold's hourly revenue equals SQL over the source; other windows hold zero orders."""
    expected = await expected_hourly(connection, retention, size)
    gold = {
        (r["window_start"], r["currency"]): (r["revenue"], r["order_count"], r["avg_order_value"])
        for r in await connection.fetch(
            "SELECT window_start, currency, revenue, order_count, avg_order_value "
            "FROM gold.hourly_revenue"
        )
    }
    hourly = {k for k in expected if gold.get(k) != expected[k]}
    hourly |= {k for k, v in gold.items() if k not in expected and v[1] != 0}
    if hourly:
        window = min(hourly)
        verdict.violate(
            "I4",
            f"{len(hourly)} hourly revenue windows differ, e.g. {window[0].isoformat()}"
            f" {window[1]}: gold {gold.get(window)} vs source {expected.get(window)}",
        )
    verdict.figures["gold hourly mismatches"] = len(hourly)


async def _check_features(
    verdict: Verdict, connection: asyncpg.Connection, as_of: datetime
) -> None:
    """I4: gold's customer features equal SQL over the source as of ``as_of``; customers the
    source no longer has hold zero orders."""
    wanted = await expected_features(connection, as_of)
    stored = {
        r["customer_id"]: tuple(r[c] for c in FEATURE_COLUMNS)
        for r in await connection.fetch("SELECT * FROM gold.customer_features")
    }
    features = {k for k in wanted if stored.get(k) != wanted[k]}
    features |= {k for k, v in stored.items() if k not in wanted and v[4] != 0}
    if features:
        customer = min(features)
        verdict.violate(
            "I4",
            f"{len(features)} customers' features differ, e.g. {customer}:"
            f" gold {stored.get(customer)} vs source {wanted.get(customer)}",
        )
    verdict.figures["feature mismatches"] = len(features)


async def _check_redis(
    verdict: Verdict, connection: asyncpg.Connection, settings: Settings, as_of: datetime | None
) -> None:
    """I5: each feature hash equals its gold row (no hash without a row), and every L2
    cache entry holds the source row's current version (or the source row is gone)."""
    r = settings.redis
    client = redis_async.Redis(
        host=r.host, port=r.port, username=r.client_auth()[0], password=r.client_auth()[1], db=r.db
    )
    mismatches = 0
    try:
        prefix = settings.features.redis_prefix
        rows = {
            row["customer_id"]: row
            for row in await connection.fetch("SELECT * FROM gold.customer_features")
        }
        seen = set()
        async for raw in client.scan_iter(match=f"{prefix}*", count=1000):
            name = raw.decode()
            seen.add(name)
            customer = name[len(prefix) :]
            row = rows.get(int(customer)) if customer.isdigit() else None
            cached = {_text(k): _text(v) for k, v in (await client.hgetall(raw)).items()}
            if row is None or not feature_hash_matches(cached, row):
                mismatches += 1
                if mismatches == 1:
                    verdict.violate("I5", f"Redis {name} differs from gold: {cached}")
        absent = [k for k in rows if f"{prefix}{k}" not in seen]
        if absent:
            mismatches += len(absent)
            verdict.violate("I5", f"{len(absent)} customers in gold have no Redis features")
        cache_prefix = settings.cache.key_prefix
        for kind, (table, column) in CACHE_CONTRACT.items():
            versions = {
                row[0]: row[1]
                for row in await connection.fetch(
                    f"SELECT {column}, version FROM public.{table} WHERE deleted_at IS NULL"
                )
            }
            async for raw in client.scan_iter(match=f"{cache_prefix}:{kind}:*", count=1000):
                entity = raw.decode().rsplit(":", 1)[1]
                if not entity.isdigit() or await client.type(raw) != b"string":
                    continue
                payload = await client.get(raw)
                value = json.loads(payload)["v"] if payload else None
                current = versions.get(int(entity))
                cached_version = None if value is None else value.get("version")
                if cached_version != current:
                    mismatches += 1
                    verdict.violate(
                        "I5",
                        f"stale cache {raw.decode()}: version {cached_version}, source {current}",
                    )
    finally:
        await client.aclose()
    verdict.figures["Redis mismatches"] = mismatches


def feature_hash_matches(cached: dict[str, str], row: asyncpg.Record) -> bool:
    """The Redis hash format of DESIGN.md section 8 (null = empty string, ``_ts`` = as_of ms)."""
    if cached.get("_version") != str(row["feature_version"]):
        return False
    if cached.get("_ts") != str(int(row["as_of"].timestamp() * 1000)):
        return False
    for column in FEATURE_COLUMNS:
        value, text = row[column], cached.get(column)
        if value is None:
            if text != "":
                return False
        elif isinstance(value, Decimal):
            try:
                if text is None or Decimal(text) != value:
                    return False
            except InvalidOperation:
                return False
        elif text != str(value):
            return False
    return True


def _check_stall(
    verdict: Verdict,
    cdc: dict[RecordId, CdcRecord],
    bronze: dict[RecordId, list[datetime]],
    allowed_s: float,
) -> None:
    """I7: the longest a record waited between reaching Kafka and reaching bronze."""
    worst = 0.0
    worst_key: RecordId | None = None
    for key, times in bronze.items():
        record = cdc.get(key)
        if record is None:
            continue
        waited = min(times).timestamp() - record.timestamp_ms / 1000
        if waited > worst:
            worst, worst_key = waited, key
    verdict.figures["maximum stall (s)"] = round(worst, 1)
    if worst > allowed_s:
        verdict.violate(
            "I7", f"record {worst_key} waited {worst:.1f} s for bronze (allowed {allowed_s:.0f} s)"
        )


def render(verdict: Verdict) -> str:
    """The report: the figures, then one line per invariant (PASS, or what broke it)."""
    width = max(len(k) for k in [*verdict.figures, "invariant"]) + 2
    lines = [f"{'figure':<{width}}value", "-" * (width + 12)]
    lines += [f"{name:<{width}}{value}" for name, value in verdict.figures.items()]
    lines += ["", f"{'invariant':<{width}}result", "-" * (width + 12)]
    for invariant, meaning in INVARIANTS.items():
        found = [d for i, d in verdict.violations if i == invariant]
        result = "PASS" if not found else f"FAIL ({len(found)}): {found[0]}"
        lines.append(f"{invariant:<{width}}{result}  [{meaning}]")
    lines.append("")
    lines.append("ORACLE: PASS" if verdict.passed else f"ORACLE: FAIL {' '.join(verdict.broken)}")
    return "\n".join(lines)
