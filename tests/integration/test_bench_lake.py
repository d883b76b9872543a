"""The lake benchmark runs end to end on a tiny input and reports every figure it promises.

Functional only: no figure is judged here (the machine is shared; see bench/lake.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from confluent_kafka.admin import AdminClient

from bench.lake import LakeBenchOptions, run
from config.settings import Settings


def leftovers(settings: Settings) -> set[str]:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    topics = {t for t in admin.list_topics(timeout=10).topics if t.startswith("bvlbench")}
    groups = {
        g.group_id
        for g in admin.list_consumer_groups(request_timeout=10).result().valid
        if g.group_id.startswith("bv-lbench-")
    }
    return topics | groups


def test_lake_benchmark_reports_every_figure_and_cleans_up(
    settings: Settings, tmp_path: Path
) -> None:
    before = leftovers(settings)
    path = tmp_path / "lake.json"
    result = run(
        LakeBenchOptions(changes=400, batch_max_records=500, repeats=1, json_path=path),
        settings,
    )
    assert json.loads(path.read_text()) == result
    assert result["records"] >= 400
    assert result["bronze_rows"] <= result["records"]
    for figure in (
        "baseline_write_deltalake_rows_per_s",
        "ours_write_path_rows_per_s",
        "ours_end_to_end_records_per_s",
        "decode_records_per_s",
    ):
        assert result[figure] > 0, figure
    assert result["end_to_end_runs"][0]["rows"] == result["bronze_rows"]
    assert leftovers(settings) <= before
