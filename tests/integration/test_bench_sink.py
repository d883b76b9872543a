"""The sink benchmark runs end to end on a tiny input and reports every figure it promises.

Functional only: no figure is judged here (the machine is shared; see bench/sink.py).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from confluent_kafka.admin import AdminClient

from bench.sink import BenchOptions, run
from config.settings import Settings
from sinks.postgres.connection import connect


def bench_leftovers(settings: Settings) -> set[str]:
    """Databases, connectors, slots, topics and groups named like the benchmark's."""

    async def databases_and_slots() -> set[str]:
        connection = await connect(settings.postgres, "postgres")
        try:
            rows = await connection.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE 'bv\\_bench\\_%' UNION ALL "
                "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'bv\\_bench\\_%'"
            )
            return {r[0] for r in rows}
        finally:
            await connection.close()

    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    topics = {t for t in admin.list_topics(timeout=10).topics if t.startswith("bvbench")}
    groups = {
        g.group_id
        for g in admin.list_consumer_groups(request_timeout=10).result().valid
        if g.group_id.startswith("bv-bench-")
    }
    listed = httpx.get(f"{settings.connect.url}/connectors", timeout=10).json()
    connectors = {name for name in listed if name.startswith("bv-bench-")}
    return asyncio.run(databases_and_slots()) | topics | groups | connectors


def test_sink_benchmark_writes_every_figure_and_cleans_up(
    settings: Settings, tmp_path: Path
) -> None:
    before = bench_leftovers(settings)
    path = tmp_path / "sink.json"
    options = BenchOptions(
        changes=300,
        sweep=(),
        repeats=1,
        latency_min_s=0.5,
        phase_timeout_s=90,
        json_path=path,
        metrics_pairs=1,
    )
    result = run(options, settings)

    assert json.loads(path.read_text()) == result
    assert set(result) >= {"input", "baselines", "ours", "latency", "ratios", "targets"}
    assert set(result["baselines"]) == {
        "b0_raw_consumer_records_per_s",
        "b1_copy_unindexed_rows_per_s",
        "b2_fastavro_records_per_s",
    }
    assert result["input"]["records"] >= 300
    assert result["ours"]["records"] == result["input"]["records"]
    assert {"records_per_s", "cpu_s_per_1k_records", "peak_rss_mb"} <= set(result["ours"])
    assert {"p50_ms", "p99_ms", "records"} <= set(result["latency"])
    assert result["latency"]["records"] == result["input"]["records"] * result["latency"]["passes"]
    assert {"ours_over_b0", "ours_over_target_20k", "p99_over_500ms"} <= set(result["ratios"])
    overhead = result["metrics_overhead"]
    assert len(overhead["records_per_s_on"]) == len(overhead["records_per_s_off"]) == 1
    assert "overhead_fraction" in overhead
    assert bench_leftovers(settings) <= before
