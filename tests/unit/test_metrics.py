"""The metric set: names and labels of DESIGN.md section 10, per-batch helpers, freshness."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from observability.lag import PartitionLag
from observability.metrics import METRIC_FAMILIES, Metrics, freshness_seconds


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry(), clock=lambda: 1_000_000.0)


def test_every_design_metric_is_registered_with_its_labels(metrics: Metrics) -> None:
    families = {family.name: family for family in metrics.registry.collect()}
    assert set(families) == set(METRIC_FAMILIES)
    expected_labels = {
        "bv_data_processing_duration_seconds": {"pipeline", "status"},
        "bv_data_records_processed": {"pipeline"},
        "bv_data_processing_errors": {"pipeline", "error_type"},
        "bv_consumer_lag_records": {"topic", "partition"},
        # issue 19: `bitvelocity status` shows lag per pipeline (analytics has no offsets table)
        "bv_pipeline_lag_records": {"pipeline"},
        "bv_event_freshness_seconds": {"pipeline"},
        "bv_dlq_records": {"topic", "reason"},
        "bv_late_events": set(),
        "bv_sink_batch_rows": set(),
        "bv_sink_commit_duration_seconds": set(),
        "bv_cache_requests": {"cache", "layer", "result"},
        "bv_cache_evictions": {"cache"},
        "bv_cache_warm_duration_seconds": set(),
        "bv_quality_failures": {"rule", "severity"},
        "bv_schema_changes": {"table", "change", "decision"},
        "bv_schema_paused_tables": {"table"},
        "bv_messages_published": {"broker", "destination"},
        "bv_message_publish_failures": {"broker", "destination", "outcome"},
    }
    assert set(expected_labels) == set(METRIC_FAMILIES)
    for name, labels in expected_labels.items():
        collector = metrics.registry._names_to_collectors[name]
        assert set(collector._labelnames) == labels, name


def test_two_metric_sets_on_separate_registries_do_not_collide() -> None:
    first, second = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    first.record_batch("bronze", 3, 0.1)
    assert value(second.registry, "bv_data_records_processed_total", pipeline="bronze") is None


def test_a_committed_batch_adds_its_records_and_one_duration_sample(metrics: Metrics) -> None:
    metrics.record_batch("bronze", 500, 0.02)
    metrics.record_batch("bronze", 250, 0.2)
    r = metrics.registry
    assert value(r, "bv_data_records_processed_total", pipeline="bronze") == 750
    count = value(r, "bv_data_processing_duration_seconds_count", pipeline="bronze", status="ok")
    assert count == 2
    assert value(
        r, "bv_data_processing_duration_seconds_sum", pipeline="bronze", status="ok"
    ) == pytest.approx(0.22)


def test_a_failed_batch_counts_its_duration_but_no_records(metrics: Metrics) -> None:
    metrics.record_batch("silver", 100, 0.5, status="error")
    r = metrics.registry
    assert value(r, "bv_data_records_processed_total", pipeline="silver") is None
    assert (
        value(r, "bv_data_processing_duration_seconds_count", pipeline="silver", status="error")
        == 1
    )


def test_errors_dlq_late_quality_and_cache_counters_carry_their_labels(metrics: Metrics) -> None:
    metrics.record_errors("bronze", "FramingError", 2)
    metrics.record_dlq("bitvelocity.public.orders", "FramingError")
    metrics.record_late_events(4)
    metrics.record_quality_failures("orders.total_amount.range", "ERROR", 3)
    metrics.record_quality_failures("orders.email.pattern", "WARNING", 0)
    metrics.record_cache("product", "l1", hits=9, misses=1)
    r = metrics.registry
    assert (
        value(r, "bv_data_processing_errors_total", pipeline="bronze", error_type="FramingError")
        == 2
    )
    assert (
        value(r, "bv_dlq_records_total", topic="bitvelocity.public.orders", reason="FramingError")
        == 1
    )
    assert value(r, "bv_late_events_total") == 4
    assert (
        value(r, "bv_quality_failures_total", rule="orders.total_amount.range", severity="ERROR")
        == 3
    )
    assert (
        value(r, "bv_quality_failures_total", rule="orders.email.pattern", severity="WARNING")
        is None
    )
    assert value(r, "bv_cache_requests_total", cache="product", layer="l1", result="hit") == 9
    assert value(r, "bv_cache_requests_total", cache="product", layer="l1", result="miss") == 1


def test_sink_commit_records_rows_and_latency(metrics: Metrics) -> None:
    metrics.record_sink_commit(rows=5000, seconds=0.04)
    r = metrics.registry
    assert value(r, "bv_sink_batch_rows_sum") == 5000
    assert value(r, "bv_sink_batch_rows_bucket", le="5000.0") == 1
    assert value(r, "bv_sink_batch_rows_bucket", le="2500.0") == 0
    assert value(r, "bv_sink_commit_duration_seconds_bucket", le="0.05") == 1
    assert value(r, "bv_sink_commit_duration_seconds_bucket", le="0.025") == 0


def test_lag_gauge_has_one_series_per_partition(metrics: Metrics) -> None:
    metrics.set_lag([PartitionLag("t", 0, 7), PartitionLag("t", 1, 0)])
    metrics.set_lag([PartitionLag("t", 0, 3)])
    r = metrics.registry
    assert value(r, "bv_consumer_lag_records", topic="t", partition="0") == 3
    assert value(r, "bv_consumer_lag_records", topic="t", partition="1") == 0


def test_lag_with_a_pipeline_also_publishes_the_pipelines_sum() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.set_lag([PartitionLag("t", 0, 7), PartitionLag("t", 1, 5)], "medallion")
    assert value(metrics.registry, "bv_pipeline_lag_records", pipeline="medallion") == 12


def test_freshness_is_computed_at_scrape_from_the_newest_committed_event() -> None:
    now = [1_000_000.0]
    metrics = Metrics(CollectorRegistry(), clock=lambda: now[0])
    newest = datetime.fromtimestamp(now[0] - 12, UTC)
    metrics.record_committed_event_time("bronze", newest)
    metrics.record_committed_event_time("bronze", newest - timedelta(minutes=5))  # older: ignored
    assert value(metrics.registry, "bv_event_freshness_seconds", pipeline="bronze") == 12
    now[0] += 30  # no commit for 30 s: the pipeline looks 30 s staler
    assert value(metrics.registry, "bv_event_freshness_seconds", pipeline="bronze") == 42


def test_freshness_before_any_commit_is_not_a_number(metrics: Metrics) -> None:
    assert math.isnan(metrics.freshness_seconds("silver"))


def test_freshness_never_goes_negative_under_clock_skew() -> None:
    ahead = datetime.fromtimestamp(1_000_010, UTC)
    assert freshness_seconds(ahead, 1_000_000.0) == 0.0


def test_naive_event_times_are_refused(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        metrics.record_committed_event_time("bronze", datetime(2025, 1, 1))  # noqa: DTZ001
