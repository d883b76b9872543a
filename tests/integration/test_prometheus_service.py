"""`stack up prometheus --with-monitoring` runs Debian's Prometheus, which scrapes a worker.

Uses its own state folder and free ports, so the shared stack is untouched; stopped at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from config.settings import PROJECT_ROOT
from observability.metrics import Metrics
from observability.server import MetricsServer
from tests.local_resources import free_port


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )


@pytest.fixture
def worker() -> Iterator[tuple[Metrics, MetricsServer]]:
    metrics = Metrics(CollectorRegistry())
    with MetricsServer(metrics.registry, host="127.0.0.1", port=0) as server:
        yield metrics, server


def test_prometheus_scrapes_the_worker_and_loads_the_alert_rules(
    tmp_path: Path, worker: tuple[Metrics, MetricsServer]
) -> None:
    metrics, server = worker
    metrics.record_batch("bronze", 1234, 0.1)
    port = free_port()
    env = {
        "BV_STACK__STATE_DIR": str(tmp_path / "state"),
        "BV_MONITORING__PROMETHEUS_PORT": str(port),
        "BV_MONITORING__SCRAPE_INTERVAL_S": "1",
        "BV_WEB__METRICS_PORT": str(server.port),
        "BV_STACK__READY_TIMEOUT_S": "60",
    }
    up = cli("stack", "up", "prometheus", "--with-monitoring", "--quiet", env=env)
    try:
        assert up.returncode == 0, up.stderr
        status = cli("stack", "status", "--with-monitoring", "--json", env=env)
        assert '"name": "prometheus"' in status.stdout
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        value = None
        while time.monotonic() < deadline:
            answer = httpx.get(
                f"{base}/api/v1/query",
                params={"query": 'bv_data_records_processed_total{pipeline="bronze"}'},
                timeout=5,
            ).json()
            if answer["data"]["result"]:
                value = float(answer["data"]["result"][0]["value"][1])
                break
            time.sleep(0.5)
        assert value == 1234
        rules = httpx.get(f"{base}/api/v1/rules", timeout=5).json()
        names = {rule["name"] for group in rules["data"]["groups"] for rule in group["rules"]}
        assert "BitVelocityDLQGrowing" in names
        assert names == alert_names_in_rules_file()
    finally:
        down = cli("stack", "down", "prometheus", env=env)
    assert down.returncode == 0, down.stderr
    assert "prometheus" in down.stdout
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2)


def alert_names_in_rules_file() -> set[str]:
    """Every alert observability/alerts.yml declares (what Prometheus must have loaded)."""
    rules = yaml.safe_load((PROJECT_ROOT / "observability" / "alerts.yml").read_text())
    return {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
