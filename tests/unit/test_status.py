"""`bitvelocity status`: health per pipeline from two scrapes of the workers' /metrics."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from observability.health import merge, parse_samples, summarize
from observability.lag import PartitionLag
from observability.metrics import Metrics
from observability.server import MetricsServer

BEFORE = """
bv_data_records_processed_total{pipeline="bronze"} 1000
bv_data_processing_errors_total{pipeline="bronze",error_type="FramingError"} 1
bv_consumer_lag_records{topic="orders",partition="0"} 50
"""
AFTER = """
bv_data_records_processed_total{pipeline="bronze"} 3000
bv_data_records_processed_total{pipeline="silver"} 400
bv_data_processing_errors_total{pipeline="bronze",error_type="FramingError"} 4
bv_event_freshness_seconds{pipeline="bronze"} 2.5
bv_event_freshness_seconds{pipeline="silver"} NaN
bv_consumer_lag_records{topic="orders",partition="0"} 10
bv_consumer_lag_records{topic="orders",partition="1"} 5
bv_dlq_records_total{topic="orders",reason="FramingError"} 4
"""


def test_rates_and_recent_errors_are_differences_over_the_interval() -> None:
    report = summarize(parse_samples(BEFORE), parse_samples(AFTER), seconds=2.0)
    bronze, silver = report.pipelines
    assert (bronze.pipeline, bronze.records_per_s, bronze.records_total) == ("bronze", 1000, 3000)
    assert bronze.recent_errors == {"FramingError": 3}
    assert bronze.freshness_s == 2.5
    assert (silver.records_per_s, silver.freshness_s, silver.recent_errors) == (200, None, {})
    assert report.lag_by_topic == {"orders": 15}
    assert report.dlq_by_topic == {"orders": 4}


def test_a_counter_reset_between_scrapes_counts_from_zero() -> None:
    before = parse_samples('bv_data_records_processed_total{pipeline="bronze"} 5000\n')
    after = parse_samples('bv_data_records_processed_total{pipeline="bronze"} 100\n')
    [bronze] = summarize(before, after, seconds=1.0).pipelines
    assert bronze.records_per_s == 100


def test_workers_merge_by_summing_counters_and_taking_the_worst_freshness() -> None:
    one = parse_samples(AFTER)
    two = parse_samples(
        'bv_data_records_processed_total{pipeline="bronze"} 7\n'
        'bv_event_freshness_seconds{pipeline="bronze"} 9\n'
    )
    merged = merge([one, two])
    assert merged[("bv_data_records_processed_total", (("pipeline", "bronze"),))] == 3007
    assert merged[("bv_event_freshness_seconds", (("pipeline", "bronze"),))] == 9


@pytest.fixture
def busy_worker() -> Iterator[MetricsServer]:
    """A metrics server whose bronze pipeline commits 100 records every 20 ms."""
    metrics = Metrics(CollectorRegistry())
    metrics.record_committed_event_time("bronze", datetime.now(UTC))
    metrics.record_errors("bronze", "FramingError")
    metrics.set_lag([PartitionLag("bitvelocity.public.orders", 0, 42)], "bronze")
    metrics.record_dlq("bitvelocity.public.orders", "FramingError")
    metrics.record_late_events(3)
    stop = threading.Event()

    def work() -> None:
        while not stop.wait(0.02):
            metrics.record_batch("bronze", 100, 0.001)

    thread = threading.Thread(target=work, daemon=True)
    with MetricsServer(metrics.registry, host="127.0.0.1", port=0) as server:
        thread.start()
        try:
            yield server
        finally:
            stop.set()
            thread.join(timeout=5)


def cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BV_STACK__STATE_DIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "cli", "status", *args],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip


def test_status_reads_a_running_worker(busy_worker: MetricsServer, tmp_path: Path) -> None:
    target = f"127.0.0.1:{busy_worker.port}"
    result = cli("--target", target, "--interval", "0.5", "--json", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    [bronze] = report["pipelines"]
    assert bronze["pipeline"] == "bronze"
    assert bronze["records_per_s"] > 0
    assert 0 <= bronze["freshness_s"] < 30
    assert bronze["lag_records"] == 42
    assert report["lag_by_topic"] == {"bitvelocity.public.orders": 42}
    assert report["dlq_by_topic"] == {"bitvelocity.public.orders": 1}
    assert report["late_events_total"] == 3
    table = cli("--target", target, "--interval", "0.2", tmp_path=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "bronze" in table.stdout
    assert "bitvelocity.public.orders" in table.stdout
    assert "late events (changes beyond window retention, on late-events): 3" in table.stdout


def test_status_without_any_worker_is_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = cli("--target", f"127.0.0.1:{port}", "--interval", "0.1", tmp_path=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "no worker answered" in errors[0]
