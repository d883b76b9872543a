"""The analytics benchmark runs end to end on a tiny input and reports every figure it promises.

Functional only: no figure is judged here (the machine is shared; see bench/analytics.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.analytics import render, run_analytics_bench
from config.settings import Settings


def test_analytics_benchmark_reports_rates_and_redis_round_trips(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "analytics.json"
    result = run_analytics_bench(1_500, live_events=500, json_path=path, settings=settings)
    assert json.loads(path.read_text()) == result
    assert result["events"] > 0
    assert result["b0_events_per_s"] > 0
    ours, live = result["ours"], result["live"]
    assert ours["events_per_s"] > 0
    assert ours["ratio_b0"] == round(ours["events_per_s"] / result["b0_events_per_s"], 4)
    assert ours["hourly_rows"] > 0
    assert ours["feature_rows"] > 0
    assert live["events"] > 0
    # Batched: one pipeline per flush, so never more round trips than flushes (+ script load).
    assert live["redis_round_trips"] <= live["flushes"] + 1
    assert render(result).row_count == 9
    assert result["recovery"]["state_entries"] == ours["state_entries"]
