"""The Prometheus metric set of DESIGN.md section 10, defined once, recorded per batch.

Every worker builds one ``Metrics`` (``default_metrics()`` registers it on the process-wide
registry the first time it is called, never at import); tests pass their own
``CollectorRegistry``. The helpers take counts and durations of a whole batch so the hot
path pays one call per batch, not per record. Freshness is computed when Prometheus
scrapes (now minus the newest committed event time), so it keeps growing while a pipeline
is stuck instead of freezing at the last value a commit wrote.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from observability.lag import PartitionLag

BatchStatus = Literal["ok", "error", "retry"]
CacheResult = Literal["hit", "miss"]

#: Buckets for batch processing and sink commit time: 1 ms to 30 s.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Buckets for rows per sink batch, up to the largest configurable batch sizes.
BATCH_ROW_BUCKETS = (1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000)

#: The metric families of DESIGN.md section 10 (names without the ``_total`` suffix that
#: the exposition format adds to counters).
METRIC_FAMILIES = (
    "bv_data_processing_duration_seconds",
    "bv_data_records_processed",
    "bv_data_processing_errors",
    "bv_consumer_lag_records",
    "bv_pipeline_lag_records",
    "bv_event_freshness_seconds",
    "bv_dlq_records",
    "bv_late_events",
    "bv_sink_batch_rows",
    "bv_sink_commit_duration_seconds",
    "bv_cache_requests",
    "bv_cache_evictions",
    "bv_cache_warm_duration_seconds",
    "bv_quality_failures",
    "bv_schema_changes",
    "bv_schema_paused_tables",
    "bv_messages_published",
    "bv_message_publish_failures",
)

Clock = Callable[[], float]


class Metrics:
    """All BitVelocity metrics on one registry, with per-batch recording helpers."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, clock: Clock = time.time
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._clock = clock
        self._newest_event_s: dict[str, float] = {}
        self._lock = threading.Lock()
        r = self.registry
        self._define_pipeline_metrics(r)
        self._define_sink_metrics(r)
        self._define_cache_metrics(r)
        self._define_quality_and_messaging_metrics(r)

    def _define_pipeline_metrics(self, r: CollectorRegistry) -> None:
        """Batches, records, errors, lag and freshness of every pipeline."""
        self.processing_duration = Histogram(
            "bv_data_processing_duration_seconds",
            "Wall time to process one batch, by pipeline and outcome.",
            ["pipeline", "status"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.records_processed = Counter(
            "bv_data_records_processed",
            "Records a pipeline processed and committed.",
            ["pipeline"],
            registry=r,
        )
        self.processing_errors = Counter(
            "bv_data_processing_errors",
            "Records or batches that failed, by pipeline and error class.",
            ["pipeline", "error_type"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "bv_consumer_lag_records",
            "Records between the committed offset and the partition's high watermark.",
            ["topic", "partition"],
            registry=r,
        )
        self.pipeline_lag = Gauge(
            "bv_pipeline_lag_records",
            "Records a pipeline has not processed yet, summed over its partitions.",
            ["pipeline"],
            registry=r,
        )
        self.event_freshness = Gauge(
            "bv_event_freshness_seconds",
            "Now minus the newest event time a pipeline committed (computed at scrape).",
            ["pipeline"],
            registry=r,
        )

    def _define_sink_metrics(self, r: CollectorRegistry) -> None:
        """Dead letters, late events and the sink's transactions."""
        self.dlq_records = Counter(
            "bv_dlq_records",
            "Records written to a dead-letter topic, by source topic and reason.",
            ["topic", "reason"],
            registry=r,
        )
        self.late_events = Counter(
            "bv_late_events",
            "Events older than window retention, sent to late-events.",
            registry=r,
        )
        self.sink_batch_rows = Histogram(
            "bv_sink_batch_rows",
            "Rows written per sink transaction.",
            buckets=BATCH_ROW_BUCKETS,
            registry=r,
        )
        self.sink_commit_duration = Histogram(
            "bv_sink_commit_duration_seconds",
            "Time of one sink transaction, from BEGIN to COMMIT.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )

    def _define_cache_metrics(self, r: CollectorRegistry) -> None:
        """Cache lookups, evictions and warming."""
        self.cache_requests = Counter(
            "bv_cache_requests",
            "Cache lookups by cache, layer (l1, l2) and result (hit, miss).",
            ["cache", "layer", "result"],
            registry=r,
        )
        self.cache_evictions = Counter(
            "bv_cache_evictions",
            "L2 entries evicted by invalidations, by cache (product, category, customer).",
            ["cache"],
            registry=r,
        )
        self.cache_warm_duration = Histogram(
            "bv_cache_warm_duration_seconds",
            "Time of one cache warming run (top products into L2).",
            buckets=DURATION_BUCKETS,
            registry=r,
        )

    def _define_quality_and_messaging_metrics(self, r: CollectorRegistry) -> None:
        """Quality failures, schema changes, broker publishes."""
        self.quality_failures = Counter(
            "bv_quality_failures",
            "Records failing a data quality rule, by rule and severity.",
            ["rule", "severity"],
            registry=r,
        )
        self.schema_changes = Counter(
            "bv_schema_changes",
            "Source schema changes found on a CDC table, by change and decision (decision 0021).",
            ["table", "change", "decision"],
            registry=r,
        )
        self.schema_paused = Gauge(
            "bv_schema_paused_tables",
            "1 while this worker holds a table paused by a source schema change (decision "
            "0021), 0 once accepted; the alert BitVelocitySchemaChangePaused reads it.",
            ["table"],
            registry=r,
        )
        self.messages_published = Counter(
            "bv_messages_published",
            "Messages a broker acknowledged (NATS flush, RabbitMQ confirm), by destination.",
            ["broker", "destination"],
            registry=r,
        )
        self.message_publish_failures = Counter(
            "bv_message_publish_failures",
            "Failed publish attempts (retried with backoff) or dropped messages, by destination.",
            ["broker", "destination", "outcome"],
            registry=r,
        )

    # -- per-batch recording -------------------------------------------------------------
    def record_batch(
        self, pipeline: str, records: int, seconds: float, status: BatchStatus = "ok"
    ) -> None:
        """One processed batch: its duration, and its records when it committed."""
        self.processing_duration.labels(pipeline, status).observe(seconds)
        if status == "ok" and records:
            self.records_processed.labels(pipeline).inc(records)

    def record_processed(self, pipeline: str, records: int) -> None:
        """Records processed by a pipeline that has no batches of its own to time."""
        if records > 0:
            self.records_processed.labels(pipeline).inc(records)

    def record_errors(self, pipeline: str, error_type: str, count: int = 1) -> None:
        """``count`` failures of one error class (use the exception class name)."""
        self.processing_errors.labels(pipeline, error_type).inc(count)

    def record_dlq(self, topic: str, reason: str, count: int = 1) -> None:
        """``count`` records of ``topic`` dead-lettered for ``reason`` (an error class)."""
        self.dlq_records.labels(topic, reason).inc(count)

    def record_late_events(self, count: int = 1) -> None:
        self.late_events.inc(count)

    def record_sink_commit(self, rows: int, seconds: float) -> None:
        """One sink transaction: rows written and time from BEGIN to COMMIT."""
        self.sink_batch_rows.observe(rows)
        self.sink_commit_duration.observe(seconds)

    def record_cache(self, cache: str, layer: str, hits: int, misses: int) -> None:
        """Hits and misses of one cache layer, accumulated by the caller over a batch."""
        if hits:
            self.cache_requests.labels(cache, layer, "hit").inc(hits)
        if misses:
            self.cache_requests.labels(cache, layer, "miss").inc(misses)

    def record_cache_evictions(self, cache: str, count: int = 1) -> None:
        """``count`` L2 entries of ``cache`` evicted by one invalidation batch."""
        if count:
            self.cache_evictions.labels(cache).inc(count)

    def record_cache_warm(self, seconds: float) -> None:
        self.cache_warm_duration.observe(seconds)

    def record_quality_failures(self, rule: str, severity: str, count: int) -> None:
        if count:
            self.quality_failures.labels(rule, severity).inc(count)

    def record_schema_change(self, table: str, change: str, decision: str) -> None:
        self.schema_changes.labels(table, change, decision).inc()

    def set_schema_paused(self, table: str, paused: bool) -> None:
        self.schema_paused.labels(table).set(1 if paused else 0)

    def record_published(self, broker: str, destination: str, count: int = 1) -> None:
        if count:
            self.messages_published.labels(broker, destination).inc(count)

    def record_publish_failure(
        self, broker: str, destination: str, outcome: Literal["retried", "dropped"], count: int = 1
    ) -> None:
        if count:
            self.message_publish_failures.labels(broker, destination, outcome).inc(count)

    # -- lag and freshness -----------------------------------------------------------------
    def set_lag(self, lags: Iterable[PartitionLag], pipeline: str | None = None) -> None:
        """Publish the lag of each partition (from ``observability.lag.compute_lag``), and
        with ``pipeline`` their sum as that pipeline's lag."""
        total = 0
        for lag in lags:
            self.consumer_lag.labels(lag.topic, str(lag.partition)).set(lag.lag)
            total += lag.lag
        if pipeline is not None:
            self.set_pipeline_lag(pipeline, total)

    def set_pipeline_lag(self, pipeline: str, records: int) -> None:
        self.pipeline_lag.labels(pipeline).set(records)

    def record_committed_event_time(self, pipeline: str, newest: datetime) -> None:
        """Remember the newest event time a pipeline committed; freshness derives from it.

        Older times are ignored, so a redelivered or out-of-order batch never makes the
        pipeline look staler than it is.
        """
        if newest.tzinfo is None:
            raise ValueError("event times must be timezone-aware UTC datetimes")
        seconds = newest.timestamp()
        with self._lock:
            known = self._newest_event_s.get(pipeline)
            if known is not None and known >= seconds:
                return
            first = known is None
            self._newest_event_s[pipeline] = seconds
        if first:
            self.event_freshness.labels(pipeline).set_function(
                lambda: self.freshness_seconds(pipeline)
            )

    def freshness_seconds(self, pipeline: str) -> float:
        """Now minus the newest committed event time; NaN before the first commit."""
        with self._lock:
            newest = self._newest_event_s.get(pipeline)
        if newest is None:
            return float("nan")
        return freshness_seconds(datetime.fromtimestamp(newest, UTC), self._clock())


def freshness_seconds(newest_event: datetime, now_s: float) -> float:
    """Seconds from ``newest_event`` to ``now_s`` (epoch seconds), never below zero.

    Event times come from the source database's clock; a small skew ahead of ours must
    not show as negative freshness.
    """
    return max(0.0, now_s - newest_event.timestamp())


_default: Metrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> Metrics:
    """The process-wide ``Metrics`` on prometheus_client's global registry, made once."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Metrics(REGISTRY)
        return _default


class NullMetrics(Metrics):
    """Records nothing: the "metrics off" arm of the overhead benchmark (bench/sink.py)."""


def _record_nothing(*_args: object, **_kwargs: object) -> None:
    return None


for _name in [n for n in vars(Metrics) if n.startswith(("record_", "set_"))]:
    setattr(NullMetrics, _name, _record_nothing)
