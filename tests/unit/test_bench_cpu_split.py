"""The CPU split of a benchmark window (pure: /proc text in, seconds out).

Expected values are computed by hand from the counters written here, at 100 ticks/s.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.cpu_split import (
    CpuSample,
    MachineCpu,
    ProcessCpu,
    parse_machine,
    parse_stat,
    ratio,
    sample,
    split,
    tree_cpu_s,
)

TICKS = 100.0


def stat(pid: int, comm: str, ppid: int, utime: int, stime: int, cutime: int, cstime: int) -> str:
    """A /proc/<pid>/stat line with the fields the split reads and zeros elsewhere."""
    middle = " ".join(["0"] * 9)  # pgrp .. cmajflt (fields 5-13)
    return f"{pid} ({comm}) S {ppid} {middle} {utime} {stime} {cutime} {cstime} 20 0 1 0 99\n"


def test_the_command_name_may_hold_spaces_and_parentheses() -> None:
    parsed = parse_stat(stat(42, "postgres: bv (x) idle", 7, 150, 50, 300, 100), TICKS)
    assert parsed == ProcessCpu(pid=42, ppid=7, own_s=2.0, reaped_s=4.0)


def test_a_real_stat_line_of_this_process_parses() -> None:
    text = Path("/proc/self/stat").read_text()
    parsed = parse_stat(text, TICKS)
    assert parsed.pid > 0
    assert parsed.own_s >= 0


def test_the_machine_line_counts_iowait_as_idle() -> None:
    machine = parse_machine("cpu  100 10 40 500 50 0 5 5 0 0\ncpu0 1 2 3 4\n", TICKS)
    assert machine == MachineCpu(busy_s=1.6, idle_s=5.5)


def test_a_tree_counts_descendants_once_and_strangers_never() -> None:
    processes = {
        1: ProcessCpu(1, 0, 100.0, 0.0),  # init: not ours
        10: ProcessCpu(10, 1, 1.0, 2.0),  # postmaster, 2 s of exited backends
        11: ProcessCpu(11, 10, 3.0, 0.0),  # a backend
        12: ProcessCpu(12, 11, 0.5, 0.0),  # a grandchild
        20: ProcessCpu(20, 1, 7.0, 0.0),  # the broker
    }
    assert tree_cpu_s(processes, [10]) == 6.5
    assert tree_cpu_s(processes, [10, 11]) == 6.5
    assert tree_cpu_s(processes, [20, 99]) == 7.0  # a vanished root counts nothing


def test_a_backend_exiting_inside_the_window_keeps_its_time_in_its_group() -> None:
    before = {10: ProcessCpu(10, 1, 1.0, 0.0), 11: ProcessCpu(11, 10, 3.0, 0.0)}
    after = {10: ProcessCpu(10, 1, 1.5, 4.0)}  # the backend used 1 s more, then was reaped
    assert tree_cpu_s(after, [10]) - tree_cpu_s(before, [10]) == 1.5


def test_the_split_names_what_no_group_explains_and_the_capacity() -> None:
    before = CpuSample(100.0, {"workers": 0.0, "postgres": 10.0}, MachineCpu(1000.0, 500.0))
    after = CpuSample(110.0, {"workers": 12.0, "postgres": 14.0}, MachineCpu(1019.0, 501.0))
    assert split(before, after, cores=2) == {
        "workers": 12.0,
        "postgres": 4.0,
        "other": 3.0,  # 19 busy - 12 - 4
        "idle": 1.0,
        "window_s": 10.0,
        "capacity_s": 20.0,
    }


def test_ratios_need_both_values() -> None:
    assert ratio(6_500.0, 5_000.0) == 1.3
    assert ratio(None, 5_000.0) is None
    assert ratio(6_500.0, 0.0) is None


def test_a_sample_reads_a_group_and_the_machine_from_proc(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    for pid in ("5", "6", "7"):
        (proc / pid).mkdir(parents=True)
    (proc / "5" / "stat").write_text(stat(5, "worker", 1, 200, 100, 0, 0))
    (proc / "6" / "stat").write_text(stat(6, "its child", 5, 100, 0, 0, 0))
    (proc / "7" / "stat").write_text(stat(7, "a stranger", 1, 900, 0, 0, 0))
    (proc / "stat").write_text("cpu  1000 0 0 100 0 0 0 0 0 0\n")
    ticks = os.sysconf("SC_CLK_TCK")
    taken = sample({"workers": [5]}, proc)
    assert taken.groups == {"workers": 400 / ticks}
    assert taken.machine == MachineCpu(busy_s=1000 / ticks, idle_s=100 / ticks)
