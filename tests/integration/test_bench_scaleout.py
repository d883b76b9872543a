"""The scale-out benchmark runs end to end through the CLI on a tiny input and reports every
figure it promises, by itself and in bounded time (its phases have deadlines).

Functional only: no figure is judged here (the machine is shared; see bench/scaleout.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.cli import run_cli
from tests.integration.scaleout_oracle import scaleout_stores, stack_is_ready

__all__ = ["scaleout_stores", "stack_is_ready"]  # fixtures

pytestmark = pytest.mark.timeout(900)


@pytest.mark.usefixtures("scaleout_stores")
def test_scaleout_benchmark_reports_agents_and_raw_baselines(tmp_path: Path) -> None:
    path = tmp_path / "scaleout.json"
    done = run_cli(
        "bench", "--scenario", "scaleout", "--events", "400", "--json", str(path), timeout=840
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(path.read_text())
    assert (result["telemetry_events"], result["posts"]) == (400, 100)
    for store in ("cassandra", "mongodb"):
        figures = result[store]
        assert (
            figures["agent"]["events"]
            == result["telemetry_events" if store == "cassandra" else "posts"]
        )
        assert figures["agent_events_per_s"] > 0
        assert figures["agent"]["cpu_s"] >= 0
        assert figures["agent"]["peak_rss_mb"] > 0
        assert all(rate > 0 for rate in figures["raw_rates"].values())
        assert figures["raw_best"]["per_s"] == max(figures["raw_rates"].values())
    assert "vs raw best" in done.stdout
