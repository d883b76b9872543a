"""Typed, frozen settings for every BitVelocity process, built once from the environment.

Every value can be set with an environment variable: prefix ``BV_``, nested sections joined
by ``__`` (``BV_POSTGRES__PORT=5433``, ``BV_KAFKA__BOOTSTRAP_SERVERS=...``). Secrets are
``SecretStr`` and never printed. The defaults describe the local stack that
``bitvelocity stack up`` runs on loopback; the credentials it generates on first start
live in ``<state_dir>/credentials.env`` (git-ignored) and are read from there when the
environment does not set them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote, quote_plus

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Port = Annotated[int, Field(ge=1, le=65535)]
LOOPBACK = "127.0.0.1"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS_FILE = "credentials.env"
DEFAULT_STATE_DIR = PROJECT_ROOT / ".state"


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or a wildcard: assume reachable from elsewhere


#: Every key and pub/sub channel the application uses starts with this; the app's Redis ACL
#: user may touch nothing else (``stack/redis_service.py``).
REDIS_NAMESPACE = "bv:"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _in_redis_namespace(value: str) -> str:
    """A Redis key prefix or channel the app's ACL user may use, else a setting error."""
    if not value.startswith(REDIS_NAMESPACE):
        raise ValueError(
            f"must start with {REDIS_NAMESPACE!r}: the application's Redis user reaches only "
            f"that namespace, got {value!r}"
        )
    return value


class PostgresSettings(_Section):
    """The PostgreSQL cluster holding the OLTP source and the warehouse.

    No role named here is a superuser (docs/decisions/0016-no-superuser-in-settings.md).
    ``admin_user`` is the operators' role (``migrate``, ``backup``, ``dr``, tests): it may
    create databases and roles, owns the app's databases and objects, may replicate, and is
    NOT a superuser; the stack's superuser is used by ``stack/postgres_service.py`` alone.
    """

    host: str = LOOPBACK
    port: Port = 23432
    database: str = "bitvelocity"
    admin_user: str = "bv_admin"
    admin_password: SecretStr = SecretStr("")
    debezium_user: str = "debezium"
    debezium_password: SecretStr = SecretStr("")
    worker_user: str = "bv_worker"
    worker_password: SecretStr = SecretStr("")
    connect_timeout_s: float = Field(default=10.0, gt=0)

    def dsn(self, database: str | None = None) -> str:
        """A libpq/asyncpg URL for the admin user; keep it out of logs (it holds the password)."""
        password = self.admin_password.get_secret_value()
        auth = f"{self.admin_user}:{password}" if password else self.admin_user
        return f"postgresql://{auth}@{self.host}:{self.port}/{database or self.database}"


class ConnectorSettings(_Section):
    """The Debezium connector capturing the OLTP tables (DESIGN.md section 4)."""

    name: str = "bitvelocity-postgres-cdc"
    slot: str = "bitvelocity_cdc"
    publication: str = "bitvelocity_cdc"
    tables: tuple[str, ...] = (
        "public.categories",
        "public.customers",
        "public.products",
        "public.orders",
        "public.order_items",
        "public.payments",
    )


class RedisSettings(_Section):
    """Redis: feature store and L2 cache.

    The application logs in as ``username``, an ACL user limited to keys and channels under
    ``bv:`` and without admin or dangerous commands (CONFIG, FLUSHALL, KEYS, ...).
    ``admin_password`` protects Redis' ``default`` user, for operators and the stack's probe
    only; no long-running process uses it.
    """

    host: str = LOOPBACK
    port: Port = 23379
    username: str = Field(default="bv_app", pattern=r"^[A-Za-z0-9_.-]+$")
    password: SecretStr = SecretStr("")
    admin_password: SecretStr = SecretStr("")
    db: int = Field(default=0, ge=0)

    def client_auth(self) -> tuple[str | None, str | None]:
        """``(username, password)`` for redis-py, as the app's ACL user.

        Without a password (a bare test server) the client sends no AUTH at all.
        """
        password = self.password.get_secret_value()
        return (self.username, password) if password else (None, None)


class CassandraSettings(_Section):
    """Apache Cassandra: chat messages and device telemetry (``stack up --with-scaleout``)."""

    host: str = LOOPBACK
    port: Port = 23042
    #: Internode (gossip) port of the one-node cluster; bound to loopback like the rest.
    storage_port: Port = 23700
    keyspace: str = "bitvelocity"
    #: Empty: the local node runs without authentication (loopback only).
    username: str = ""
    password: SecretStr = SecretStr("")
    heap_mb: int = Field(default=512, ge=256)
    request_timeout_s: float = Field(default=10.0, gt=0)
    #: Requests in flight per writer (``execute_concurrent`` window).
    concurrency: int = Field(default=64, ge=1)
    #: Rows of one partition per UNLOGGED batch (one mutation on the server).
    partition_batch_rows: int = Field(default=50, ge=1)


class MongoSettings(_Section):
    """The MongoDB-wire store of social posts: FerretDB with SQLite locally."""

    host: str = LOOPBACK
    port: Port = 23017
    database: str = "bitvelocity"
    username: str = ""
    password: SecretStr = SecretStr("")
    timeout_s: float = Field(default=10.0, gt=0)

    def uri(self) -> str:
        """A ``mongodb://`` URI; keep it out of logs (it may hold the password)."""
        password = quote_plus(self.password.get_secret_value())
        auth = f"{quote_plus(self.username)}:{password}@" if self.username else ""
        return f"mongodb://{auth}{self.host}:{self.port}/"


class CacheSettings(_Section):
    """The cache-aside caches of DESIGN.md section 9: L1 in process, L2 in Redis."""

    #: Prefix of every L2 key: ``<prefix>:product:<id>`` (tests use their own).
    key_prefix: str = "bv:cache"
    #: Pub/sub channel every L1 listens on for evictions.
    channel: str = "bv:invalidate"
    #: Lifetime of an L2 entry (a safety net: evictions keep entries fresh).
    l2_ttl: timedelta = Field(default=timedelta(minutes=30), gt=timedelta(0))
    #: Lifetime of an L1 entry; short, the net under a lost pub/sub message.
    l1_ttl: timedelta = Field(default=timedelta(seconds=5), gt=timedelta(0))
    l1_max_entries: int = Field(default=10_000, ge=1)
    #: How long a fill's generation token lives; far longer than any load may take.
    generation_ttl: timedelta = Field(default=timedelta(hours=2), gt=timedelta(0))
    #: Redis socket timeouts: a slow or absent Redis must degrade, not stall, a read.
    redis_timeout_s: float = Field(default=0.5, gt=0)
    #: After a Redis failure, reads skip Redis for this long before trying again.
    redis_retry_after_s: float = Field(default=1.0, gt=0)
    warm_interval: timedelta = Field(default=timedelta(minutes=5), gt=timedelta(0))
    warm_top_n: int = Field(default=100, ge=1)
    #: Invalidation agent batching (records or milliseconds, whichever comes first).
    batch_max_records: int = Field(default=1000, ge=1)
    batch_max_ms: int = Field(default=50, ge=1)
    #: PostgreSQL connections the loaders may hold.
    pool_max_size: int = Field(default=4, ge=1)

    _namespaced = field_validator("key_prefix", "channel")(_in_redis_namespace)


class KafkaSettings(_Section):
    """The Kafka cluster carrying CDC and derived topics."""

    bootstrap_servers: str = f"{LOOPBACK}:23092"
    controller_port: Port = 23093
    consumer_group: str = "bitvelocity-streams"


class ConnectSettings(_Section):
    """Kafka Connect, which runs the Debezium PostgreSQL connector."""

    url: str = f"http://{LOOPBACK}:23083"
    connector_name: str = "bitvelocity-postgres-cdc"
    converter: Literal["avro", "json"] = "avro"


class RegistrySettings(_Section):
    """The schema registry (Apicurio Registry 3, Confluent-compatible API under ccompat)."""

    url: str = f"http://{LOOPBACK}:23080"
    management_port: Port = 23000
    timeout_s: float = Field(default=5.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    backoff_initial_s: float = Field(default=0.2, gt=0)
    backoff_max_s: float = Field(default=5.0, gt=0)
    #: How our producers frame Avro (readers detect every framing by themselves).
    framing: Literal["confluent", "apicurio-legacy", "apicurio-headers"] = "confluent"
    #: Compatibility level our own subjects (hourly-revenue, ...) are registered with.
    compatibility: Literal["BACKWARD", "BACKWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"] = (
        "BACKWARD"
    )

    @property
    def confluent_url(self) -> str:
        """Base URL of the Confluent-compatible API our client and Python serdes speak."""
        return f"{self.url}/apis/ccompat/v7"

    @property
    def apicurio_v2_url(self) -> str:
        """Base URL of the Apicurio v2 API the Kafka Connect converter speaks."""
        return f"{self.url}/apis/registry/v2"


class TopicSettings(_Section):
    """Topic names and conventions of DESIGN.md section 4."""

    cdc_prefix: str = "bitvelocity"
    dlq_suffix: str = ".dlq"
    hourly_revenue: str = "hourly-revenue"
    customer_features: str = "customer-features"
    product_updates: str = "product-updates"
    late_events: str = "late-events"
    #: Compacted changelog of the analytics state (docs/decisions/0009).
    analytics_state: str = "analytics-state"
    openlineage: str = "openlineage"
    #: Quality ERROR alerts (JSON) on their way to RabbitMQ (``BV_RABBITMQ__ALERTS_ENABLED``).
    quality_alerts: str = "quality-alerts"
    chat_messages: str = "chat-messages"
    device_telemetry: str = "device-telemetry"
    social_posts: str = "social-posts"
    partitions: int = Field(default=3, ge=1)

    def cdc_topic(self, table: str, schema: str = "public") -> str:
        """The Debezium topic of one source table, ``<prefix>.<schema>.<table>``."""
        return f"{self.cdc_prefix}.{schema}.{table}"

    def dlq_topic(self, source_topic: str) -> str:
        """The dead-letter topic that receives what ``source_topic`` could not deliver."""
        return f"{source_topic}{self.dlq_suffix}"


#: ``<table>.<column>``, both plain lower-case identifiers.
QualifiedColumn = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}\.[a-z_][a-z0-9_]{0,62}$")]
#: The gold fact table each silver table's rows feed, row by row (``gold_columns``).
GOLD_FACT_TABLES = {"orders": "order_facts"}


class SinkSettings(_Section):
    """Batching of the exactly-once PostgreSQL sink (DESIGN.md section 5)."""

    batch_max_records: int = Field(default=5000, ge=1)
    batch_max_ms: int = Field(default=200, ge=1)
    #: The broker evicts a member that does not poll for this long; while a write waits out
    #: an outage the runtime keeps polling with its partitions paused (streams/runtime.py).
    max_poll_interval_ms: int = Field(default=120_000, ge=15_000)
    #: Partition batches of one take written at once, each on its own connection: while
    #: PostgreSQL runs one lane's statements, the worker plans and encodes the other's.
    #: Two lanes, three latency runs each at half load on 2 cores (docs/decisions/0022):
    #: p99 397-499 ms against 486-1,610 ms with one lane. Earlier "one lane is as fast"
    #: figures were taken with a bug that made the lanes share one connection.
    write_lanes: int = Field(default=2, ge=1, le=16)
    retry_initial_backoff_s: float = Field(default=0.2, gt=0)
    retry_max_backoff_s: float = Field(default=10.0, gt=0)
    daily_sales_refresh_s: float = Field(default=300.0, gt=0)
    openlineage_enabled: bool = True
    #: Also sink the scale-out topics (chat-messages, device-telemetry, social-posts) into
    #: bronze, in the medallion group (docs/decisions/0015). ``bitvelocity worker
    #: --with-scaleout`` sets it; off by default, like the scale-out services themselves.
    scaleout_bronze: bool = False
    #: What a source schema change does to silver (docs/decisions/0021): ``evolve`` adds new
    #: columns and widens types, ``ignore`` keeps silver's shape where no value is altered,
    #: ``pause`` stops the table until ``bitvelocity schema accept``. Narrowing or
    #: incompatible changes pause under every policy.
    schema_policy: Literal["evolve", "pause", "ignore"] = "evolve"
    #: Per-table overrides, e.g. ``BV_SINK__SCHEMA_POLICIES='{"payments": "pause"}'``.
    schema_policies: dict[str, Literal["evolve", "pause", "ignore"]] = Field(default_factory=dict)
    #: Silver columns that also go to the gold fact table their rows feed (0021), as
    #: ``"<silver table>.<column>": "<gold table>.<column>"``, e.g.
    #: ``BV_SINK__GOLD_COLUMNS='{"orders.gift_note": "order_facts.gift_note"}'``. Once silver
    #: has the column (``evolve`` added it, or it was there), gold gets it with silver's type
    #: and every fact opened from then on carries the value; a change of it opens a new fact.
    gold_columns: dict[QualifiedColumn, QualifiedColumn] = Field(default_factory=dict)

    @field_validator("gold_columns")
    @classmethod
    def _gold_columns_feed_their_fact_table(cls, value: dict[str, str]) -> dict[str, str]:
        targets: dict[str, str] = {}
        for source, target in value.items():
            table, gold = source.split(".")[0], target.split(".")[0]
            if GOLD_FACT_TABLES.get(table) != gold:
                fed = ", ".join(f"{s} -> {g}" for s, g in GOLD_FACT_TABLES.items())
                raise ValueError(f"{source} -> {target}: silver rows feed only {fed}")
            if target in targets:
                raise ValueError(f"{target} is mapped from both {targets[target]} and {source}")
            targets[target] = source
        return value


class WindowSettings(_Section):
    """Event-time windows of DESIGN.md section 8."""

    hourly_revenue_size: timedelta = timedelta(hours=1)
    grace_period: timedelta = timedelta(minutes=5)
    retention: timedelta = timedelta(days=35)
    features_lookback: timedelta = timedelta(days=30)
    features_sweep_interval: timedelta = timedelta(minutes=5)
    reference_grace_period: timedelta = timedelta(minutes=10)


class SegmentRule(_Section):
    """A lifetime segment: a customer qualifies with at least both minimums."""

    name: str
    min_orders: int = Field(default=0, ge=0)
    min_value_usd: Decimal = Field(default=Decimal(0), ge=0)


_SEGMENTS = (
    SegmentRule(name="VIP", min_orders=20, min_value_usd=Decimal(5000)),
    SegmentRule(name="LOYAL", min_orders=10),
    SegmentRule(name="REGULAR", min_orders=3),
    SegmentRule(name="NEW", min_orders=1),
)


class FeatureSettings(_Section):
    """Customer features of DESIGN.md section 8 (the look-back and sweep are in ``windows``)."""

    #: Checked in order, first match wins; a customer matching none is ``fallback_segment``.
    segments: tuple[SegmentRule, ...] = _SEGMENTS
    fallback_segment: str = "NONE"
    #: Redis hash prefix of the feature store: ``<prefix><customer id>``.
    redis_prefix: str = "bv:features:customer:"
    #: A partition with no event for this long is advanced by Debezium heartbeats.
    idle_partition_after: timedelta = timedelta(seconds=10)
    #: How often the analytics agent flushes emitted rows to PostgreSQL, Redis and Kafka.
    flush_interval: timedelta = timedelta(milliseconds=500)
    #: The analytics worker's local state folder (a cache of its changelog; safe to
    #: delete). Default: ``<stack.state_dir>/analytics-state``.
    state_dir: Path | None = None
    #: Decoded entries kept in memory per stored state table (orders, items, customers'
    #: order ids and features, contributions); the rest is read from the state folder.
    state_cache_entries: int = Field(default=20_000, ge=1)
    #: A replay (first start, lost state folder) commits its state to the changelog every
    #: this many changed entries: uncommitted entries are held in memory.
    replay_commit_entries: int = Field(default=20_000, ge=1)
    #: Customers whose features one flush recomputes at most (the rest follow in the next
    #: flushes): bounds a flush's memory when every customer is dirty (after a replay).
    #: The same bound applies to the age-out schedule entries one flush takes and to the
    #: orders of the windows beyond retention one flush forgets.
    emit_max_customers: int = Field(default=10_000, ge=1)

    _namespaced = field_validator("redis_prefix")(_in_redis_namespace)


class QualitySettings(_Section):
    """Data-quality rules and checks (DESIGN.md section 7); the reference grace period is
    ``windows.reference_grace_period``."""

    #: How often a worker asks whether ``ops.data_quality_rules`` changed (a cheap query).
    rules_refresh_interval: timedelta = timedelta(seconds=5)
    #: How often pending REFERENCE checks are re-checked.
    sweep_interval: timedelta = timedelta(seconds=30)
    #: Most pending checks settled by one sweep (oldest deadline first).
    sweep_batch_size: int = Field(default=1000, ge=1)
    #: Failing rows kept, redacted, per rule per batch in ``ops.data_quality_results``.
    max_samples: int = Field(default=5, ge=0, le=100)


#: ``schema.table`` names one partitioned parent, ``schema.*`` every parent of that schema.
PARENT_TABLE_KEY = re.compile(r"^[a-z_][a-z0-9_$]*\.(?:[a-z_][a-z0-9_$]*|\*)$")


def _check_parent_keys(name: str, keys: list[str]) -> None:
    bad = [key for key in keys if not PARENT_TABLE_KEY.match(key)]
    if bad:
        raise ValueError(
            f"{name} keys must be schema.table or schema.* in lower case, got {', '.join(bad)}"
        )


_RETENTION: dict[str, timedelta | None] = {"bronze.*": timedelta(days=30)}


class PartitionSettings(_Section):
    """Partition lifecycle of every pg_partman-managed table (DESIGN.md section 6).

    Keys are ``schema.table`` or ``schema.*``; an exact key wins over its schema's wildcard,
    and a parent no key matches is kept forever. Set them as JSON, e.g.
    ``BV_PARTITIONS__RETENTION='{"bronze.*": "P30D", "bronze.orders": "P90D"}'``
    (ISO 8601 durations or seconds; ``null`` means keep).
    """

    #: How long a partition is kept after its upper bound has passed. Bronze is a replayable
    #: landing zone; silver and the OLTP source are kept (no key).
    retention: dict[str, timedelta | None] = Field(default_factory=lambda: dict(_RETENTION))
    #: ``detach``: move the expired partition, rows intact, to schema ``archive``;
    #: ``drop``: delete it.
    archive_mode: Literal["detach", "drop"] = "detach"
    #: Future partitions to keep ahead of now, overriding pg_partman's ``premake`` of a parent
    #: (the migrations set 7 for daily bronze, 3 for monthly orders).
    premake: dict[str, Annotated[int, Field(ge=1, le=1000)]] = Field(default_factory=dict)
    #: How long a DETACH/DROP may wait for the parent's lock before giving up (retry later)
    #: rather than stall the sink's writes queued behind it.
    lock_timeout: timedelta = Field(default=timedelta(seconds=5), gt=timedelta(0))

    @field_validator("retention")
    @classmethod
    def _retention_keys(cls, value: dict[str, timedelta | None]) -> dict[str, timedelta | None]:
        _check_parent_keys("retention", list(value))
        negative = [key for key, keep in value.items() if keep is not None and keep < timedelta(0)]
        if negative:
            raise ValueError(f"retention must not be negative, got it for {', '.join(negative)}")
        return value

    @field_validator("premake")
    @classmethod
    def _premake_keys(cls, value: dict[str, int]) -> dict[str, int]:
        _check_parent_keys("premake", list(value))
        return value


class LakeSettings(_Section):
    """The Delta Lake bronze tier (docs/decisions/0010-delta-lake-bronze.md).

    One Delta table per source table at ``<uri>/bronze/<table>``, partitioned by
    ``ingestion_date``. ``uri`` is a local folder (default ``<state_dir>/lake``) or an
    object store URI (``s3://bucket/prefix``) with ``storage_options`` as delta-rs takes
    them, e.g. ``BV_LAKE__STORAGE_OPTIONS='{"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}'``.
    """

    uri: str | None = None
    storage_options: dict[str, SecretStr] = Field(default_factory=dict)
    #: Parquet codec of the data files (``zstd``, ``snappy``, ``gzip``, ``none``) and level.
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    compression_level: int | None = Field(default=3, ge=1, le=22)
    #: The lake sink's consumer group is ``<BV_KAFKA__CONSUMER_GROUP>-<group_suffix>``.
    group_suffix: str = "lake"
    #: The medallion sink already dead-letters an undecodable record; the lake sink reading
    #: the same topics would publish it a second time, so by default it only counts it.
    publish_dead_letters: bool = False
    #: ``lake vacuum`` keeps files that stopped being referenced this recently (time travel,
    #: readers still on an older version); delta-rs refuses less than 7 days without --force.
    vacuum_retention: timedelta = Field(default=timedelta(days=7), ge=timedelta(0))
    #: ``lake compact`` rewrites small files into files of about this size.
    target_file_size_mb: int = Field(default=128, ge=1)

    def root(self, state_dir: Path) -> str:
        """The lake's root URI (a local path when no URI is configured)."""
        return (self.uri or str(state_dir / "lake")).rstrip("/")

    def plain_storage_options(self) -> dict[str, str]:
        return {key: value.get_secret_value() for key, value in self.storage_options.items()}


class WebSettings(_Section):
    """Faust web views and Prometheus ``/metrics``: loopback unless configured otherwise.

    Beyond loopback a bearer token is required (``observability/web_auth.py``).
    """

    host: str = LOOPBACK
    port: Port = 23066
    metrics_port: Port = 23067
    token: SecretStr | None = None

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> WebSettings:
        if self.token is not None and not self.token.get_secret_value():
            raise ValueError("BV_WEB__TOKEN is empty: set a real token or unset it")
        if self.token is None and not is_loopback(self.host):
            raise ValueError(
                f"BV_WEB__HOST={self.host} serves web views and /metrics beyond this machine "
                "without authentication: set BV_WEB__TOKEN (or bind to 127.0.0.1)"
            )
        return self


class MonitoringSettings(_Section):
    """The optional Prometheus of ``bitvelocity stack up --with-monitoring``."""

    host: str = LOOPBACK
    prometheus_port: Port = 23090
    scrape_interval_s: int = Field(default=5, ge=1)
    retention: str = "2d"
    #: Extra ``host:port`` worker ``/metrics`` targets besides ``BV_WEB__METRICS_PORT``.
    extra_targets: tuple[str, ...] = ()
    #: The freshness SLO ``bitvelocity status`` compares against (alerts.yml uses 60 s too).
    freshness_slo_s: float = Field(default=60.0, gt=0)
    #: ``stack status`` warns on a replication slot holding back more WAL than this.
    slot_retained_wal_warn_bytes: int = Field(default=1 << 30, ge=0)
    #: Seconds a worker reuses its measurement of state folder sizes (``bv_state_bytes``).
    disk_usage_cache_s: float = Field(default=60.0, ge=0)


class BackupSettings(_Section):
    """Backups and disaster recovery (``bitvelocity backup`` and ``bitvelocity dr``)."""

    #: Where logical backups are kept by the local target; default ``<state_dir>/backups``.
    archive_dir: Path | None = None
    #: Where PostgreSQL archives WAL (``archive_command``); the OS user ``postgres`` must be
    #: able to write it. Default: ``wal-archive`` next to the stack's cluster.
    wal_archive_dir: Path | None = None
    #: Write ``archive_mode``/``archive_command`` into the stack's generated server config.
    wal_archiving: bool = True
    #: Logical backups kept; ``backup create`` removes the oldest beyond this.
    retention: int = Field(default=7, ge=1)
    #: Where backups are uploaded: only a local folder ships (object storage plugs in here).
    target: Literal["local"] = "local"
    #: pg_dump compression level of the custom format.
    compression: int = Field(default=6, ge=0, le=9)
    #: WAL retention (``bitvelocity backup prune``, run after each ``backup base``): keep the
    #: WAL needed to restore from this many newest verified base backups; older base
    #: backups and the WAL before them are deleted.
    base_retention: int = Field(default=2, ge=1)
    #: Base backups and archived WAL files younger than this are never pruned.
    wal_min_age_s: float = Field(default=3600.0, ge=0)
    #: A point-in-time target that must stay restorable (ISO time with zone); None: none.
    pitr_target: datetime | None = None
    #: Prune the WAL archive automatically after every ``backup base``.
    prune_after_base: bool = True

    @field_validator("pitr_target")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("BV_BACKUP__PITR_TARGET needs a time zone, e.g. 2026-01-01T12:00Z")
        return value

    #: The streaming replica of ``bitvelocity dr replica``.
    replica_port: Port = 23433
    replica_dir: Path | None = None
    replication_user: str = "bv_replicator"
    replication_password: SecretStr = SecretStr("")

    def backups_root(self, state_dir: Path) -> Path:
        """The local folder holding logical backups."""
        return (self.archive_dir or state_dir / "backups").expanduser().resolve()


class NatsSettings(_Section):
    """NATS (``stack up --with-scaleout``): cache evictions fanned out to non-Python services."""

    host: str = LOOPBACK
    port: Port = 23222
    #: Client token the server requires (generated into credentials.env on first ``stack up``).
    token: SecretStr = SecretStr("")
    #: Publish every cache eviction on ``invalidation_subject`` too (besides Redis pub/sub).
    invalidation_enabled: bool = False
    invalidation_subject: str = "cache.invalidate"
    #: Evictions waiting for NATS; beyond this the oldest are dropped (and counted).
    max_pending: int = Field(default=10_000, ge=1)
    timeout_s: float = Field(default=2.0, gt=0)
    retry_initial_backoff_s: float = Field(default=0.2, gt=0)
    retry_max_backoff_s: float = Field(default=5.0, gt=0)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"


class RabbitMQSettings(_Section):
    """RabbitMQ (``stack up --with-scaleout``): quality ERROR alerts and DLQ notifications."""

    host: str = LOOPBACK
    port: Port = 23672
    #: Erlang distribution port and the port of its epmd (both loopback only).
    dist_port: Port = 23673
    epmd_port: Port = 23369
    user: str = "bv"
    password: SecretStr = SecretStr("")
    vhost: str = "/"
    #: The sink writes quality ERROR alerts to ``topics.quality_alerts`` and ``bitvelocity
    #: alerts relay`` forwards them and DLQ notifications to RabbitMQ.
    alerts_enabled: bool = False
    #: Durable queue the relay publishes to (default exchange, publisher confirms).
    alerts_queue: str = "bv.alerts"
    #: Dead-letter topics the relay notifies about (a regular expression, librdkafka style).
    dlq_pattern: str = r"^.*\.dlq$"
    confirm_timeout_s: float = Field(default=5.0, gt=0)
    retry_initial_backoff_s: float = Field(default=0.2, gt=0)
    retry_max_backoff_s: float = Field(default=5.0, gt=0)

    def url(self) -> str:
        """An AMQP URL with the password; keep it out of logs."""
        password = quote(self.password.get_secret_value(), safe="")
        vhost = quote(self.vhost, safe="")
        return f"amqp://{quote(self.user, safe='')}:{password}@{self.host}:{self.port}/{vhost}"


class WorkerSettings(_Section):
    """The worker process (``bitvelocity worker``; the benchmark's sink processes too)."""

    #: Container allocations between two young-generation runs of CPython's cyclic garbage
    #: collector (the interpreter's default is 700). A sink allocates dozens of dicts and
    #: tuples per record, almost all freed by reference counting, so at 700 the collector
    #: runs every few records and rescans the records held in flight. Measured
    #: (docs/decisions/0022, "stop 35"): decode and plan of 40,000 held records 54 -> 45 us a
    #: record offline; the full pipeline (sink and analytics in one process, whose state
    #: every full collection scans) 5,279 and 5,553 -> 6,266 and 5,952 records/s in two
    #: alternated pairs; the analytics worker 5,899 -> 7,448 events/s (peak RSS 279 -> 289
    #: MB); the sink alone within its run-to-run noise (10-12k records/s either way).
    #: Unset: the interpreter's default.
    gc_gen0_threshold: int | None = Field(default=50_000, ge=700)


class StackSettings(_Section):
    """Where the local stack keeps its downloads, data, logs and pids."""

    state_dir: Path = DEFAULT_STATE_DIR
    java_home: Path | None = None
    registry_java_home: Path | None = None
    kafka_heap_mb: int = Field(default=768, ge=128)
    connect_heap_mb: int = Field(default=768, ge=128)
    registry_heap_mb: int = Field(default=384, ge=128)
    ready_timeout_s: float = Field(default=180.0, gt=0)
    #: Built binaries kept across state folders (FerretDB); default ``~/.cache/bitvelocity``.
    cache_dir: Path | None = None

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()


class Settings(BaseSettings):
    """All settings of one process. Frozen: build once, pass down."""

    model_config = SettingsConfigDict(
        env_prefix="BV_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
    )

    app_name: str = "bitvelocity-streams"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    postgres: PostgresSettings = PostgresSettings()
    redis: RedisSettings = RedisSettings()
    cassandra: CassandraSettings = CassandraSettings()
    mongo: MongoSettings = MongoSettings()
    cache: CacheSettings = CacheSettings()
    kafka: KafkaSettings = KafkaSettings()
    connect: ConnectSettings = ConnectSettings()
    connector: ConnectorSettings = ConnectorSettings()
    registry: RegistrySettings = RegistrySettings()
    topics: TopicSettings = TopicSettings()
    sink: SinkSettings = SinkSettings()
    windows: WindowSettings = WindowSettings()
    quality: QualitySettings = QualitySettings()
    features: FeatureSettings = FeatureSettings()
    partitions: PartitionSettings = PartitionSettings()
    lake: LakeSettings = LakeSettings()
    web: WebSettings = WebSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    backup: BackupSettings = BackupSettings()
    nats: NatsSettings = NatsSettings()
    rabbitmq: RabbitMQSettings = RabbitMQSettings()
    worker: WorkerSettings = WorkerSettings()
    stack: StackSettings = StackSettings()

    @property
    def credentials_file(self) -> Path:
        """The git-ignored file holding the passwords ``stack up`` generated."""
        return self.stack.state_dir / CREDENTIALS_FILE


def load_settings() -> Settings:
    """Build the settings from the process environment.

    Credentials that ``stack up`` generated are read from ``<state_dir>/credentials.env``;
    a variable set in the environment always wins over that file.
    """
    state_dir = Path(os.environ.get("BV_STACK__STATE_DIR", str(DEFAULT_STATE_DIR))).expanduser()
    return Settings(_env_file=state_dir / CREDENTIALS_FILE)
