"""The analytics-scale benchmark, small: one real worker process, killed and restored.

What it proves (the figures themselves are the benchmark's, not asserted): a worker whose
state was built by a replay that committed its state as it went (every 1,000 changed
entries, checked after each take of 5,000 records: twice over 12,000 events), SIGKILLed,
its state folder deleted and started again, answers every sampled customer's features
exactly as before; and the run reports the worker's own peak RSS and leaves nothing
behind (the leak check of the suite).
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.analytics_scale import ScaleOptions, render, run_scale
from config.settings import Settings


def test_a_restored_worker_answers_as_before_and_the_run_reports_memory(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "scale.json"
    options = ScaleOptions(
        events=12_000, customers=2_000, probe_customers=2_500, sample=60, json_path=path
    )
    features = settings.features.model_copy(update={"replay_commit_entries": 1_000})
    report = run_scale(options, settings.model_copy(update={"features": features}))
    assert json.loads(path.read_text()) == report
    main, probe = report["main"], report["probe"]
    assert main["catch_up"]["events"] == 12_000
    # Two commits while replaying (takes 1 and 2), one by the flush after the reconcile.
    assert main["catch_up"]["state_commits"] >= 3
    recovery = main["recovery"]
    assert recovery["customers_compared"] >= 50, recovery
    assert recovery["customers_differing"] == [], recovery
    assert report["targets"]["equal_after_recovery"] is True
    assert recovery["changelog_records"] > 0  # restored from the changelog alone
    assert 0 < recovery["answering_s"] < options.timeout_s
    assert probe["customers"] == 2_500
    assert probe["catch_up"]["events"] == 10_000
    for figures in (main["catch_up"], recovery, probe["catch_up"]):
        assert figures["peak_rss_mb"] > 50  # a Python worker's own VmHWM, not ours
    assert render(report).row_count == 11
