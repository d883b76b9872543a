"""The sink-2workers row: the best run of each arm, their ratio and the CPU split (pure).

Expected figures are computed by hand from the runs written here.
"""

from __future__ import annotations

from bench.sink_workers import WorkerReport, WorkersRun, cpu_note, workers_row

CPU = {"workers": 8.0, "postgres": 3.0, "kafka": 1.0, "other": 2.0, "idle": 6.0}


def run(records: int, seconds: float, *partitions: int) -> WorkersRun:
    workers = [
        WorkerReport(
            f"w{n}", 10, records // len(partitions), [("t", p) for p in range(count)], 0, 200.0
        )
        for n, count in enumerate(partitions)
    ]
    cpu = {**CPU, "window_s": seconds, "capacity_s": seconds * 2}
    return WorkersRun(workers, records, seconds, 1.5, 30_000, cpu)


def test_the_row_compares_the_best_run_of_each_arm() -> None:
    ones = [run(30_000, 10.0, 6), run(30_000, 6.0, 6)]  # 3,000/s and 5,000/s
    twos = [run(20_000, 4.0, 3, 3), run(20_000, 5.0, 3, 3)]  # 5,000/s and 4,000/s
    row = workers_row(ones, twos)
    assert row.key == "sink-2workers"
    assert row.rate == 5_000.0
    assert row.figures["one_worker_records_per_s"] == 5_000.0
    assert row.figures["ratio_to_one_worker"] == 1.0
    assert row.figures["one_worker_runs_records_per_s"] == [3_000, 5_000]
    assert row.figures["two_workers_runs_records_per_s"] == [5_000, 4_000]
    assert row.figures["partitions_per_worker"] == [3, 3]
    assert row.figures["cpu_s_per_1k_records"] == 0.4  # 8 CPU s over 20,000 records
    assert row.figures["with_join_records_per_s"] == 5_454.5  # 30,000 over 1.5 + 4 s


def test_two_workers_at_1_3_times_one_meet_the_target() -> None:
    row = workers_row([run(30_000, 10.0, 6)], [run(26_000, 6.0, 4, 2)])
    assert row.figures["ratio_to_one_worker"] == 1.4444  # 4,333.3 / 3,000
    assert row.figures["ratio_to_one_worker"] >= row.figures["target_ratio"]
    assert "partitions 4+2" in row.note


def test_the_note_shows_where_the_cores_went() -> None:
    note = cpu_note({**CPU, "capacity_s": 20.0})
    assert note == (
        "CPU workers 8.0 s, postgres 3.0 s, kafka 1.0 s, other 2.0 s, idle 6.0 s of 20.0 s"
    )
