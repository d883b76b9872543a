"""Where a machine's CPU went during a benchmark window, per group of processes (Linux /proc).

A group is a set of root pids with all their descendants (PostgreSQL: the postmaster and
its backends). A process's CPU is its own user+system time plus what its reaped children
used (``cutime``/``cstime``): a backend that exits inside the window moves its time from
its own counters to the postmaster's reaped counters, so the group's total stays exact.
What the machine spent that no group explains is ``other`` (other sessions' stacks on a
shared machine); ``idle`` is what was left. The parsing and the arithmetic are pure, the
two readers at the bottom only collect text from /proc.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class ProcessCpu:
    """One process's CPU seconds, from ``/proc/<pid>/stat``."""

    pid: int
    ppid: int
    own_s: float  # utime + stime
    reaped_s: float  # cutime + cstime: children that exited and were waited for


@dataclass(frozen=True)
class MachineCpu:
    """The whole machine's CPU seconds since boot, from the first line of ``/proc/stat``."""

    busy_s: float
    idle_s: float  # idle + iowait


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds of each named group and of the machine at one moment."""

    at: float  # time.monotonic()
    groups: dict[str, float]
    machine: MachineCpu


def parse_stat(text: str, ticks_per_s: float) -> ProcessCpu:
    """``/proc/<pid>/stat``; the command name may hold spaces and parentheses, so the
    fields are counted from the last ``)``."""
    pid_text, _, rest = text.partition(" (")
    fields = rest[rest.rindex(")") + 2 :].split()
    # fields[0] is the state (field 3 of proc(5)): ppid is field 4, utime..cstime 14..17.
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    own, reaped = (utime + stime) / ticks_per_s, (cutime + cstime) / ticks_per_s
    return ProcessCpu(int(pid_text), int(fields[1]), own, reaped)


def parse_machine(text: str, ticks_per_s: float) -> MachineCpu:
    """The aggregate ``cpu`` line of ``/proc/stat``: user nice system idle iowait irq softirq
    steal (guest time is already inside user)."""
    values = [int(v) for v in text.splitlines()[0].split()[1:9]]
    idle = values[3] + values[4]
    return MachineCpu((sum(values) - idle) / ticks_per_s, idle / ticks_per_s)


def tree_cpu_s(processes: Mapping[int, ProcessCpu], roots: Iterable[int]) -> float:
    """CPU seconds of ``roots`` and every descendant (own plus reaped), each counted once."""
    children: dict[int, list[int]] = {}
    for process in processes.values():
        children.setdefault(process.ppid, []).append(process.pid)
    seen: set[int] = set()
    pending = [pid for pid in roots if pid in processes]
    while pending:
        pid = pending.pop()
        if pid not in seen:
            seen.add(pid)
            pending.extend(children.get(pid, ()))
    return sum(processes[pid].own_s + processes[pid].reaped_s for pid in seen)


def split(before: CpuSample, after: CpuSample, cores: int) -> dict[str, float]:
    """CPU seconds per group over the window, plus ``other``, ``idle`` and the capacity
    (window x cores), all rounded to 10 ms."""
    window = after.at - before.at
    spent = {name: after.groups[name] - before.groups.get(name, 0.0) for name in after.groups}
    busy = after.machine.busy_s - before.machine.busy_s
    result = {name: round(max(0.0, seconds), 2) for name, seconds in spent.items()}
    result["other"] = round(max(0.0, busy - sum(spent.values())), 2)
    result["idle"] = round(after.machine.idle_s - before.machine.idle_s, 2)
    result["window_s"] = round(window, 3)
    result["capacity_s"] = round(window * cores, 2)
    return result


def ratio(value: float | None, base: float | None) -> float | None:
    """``value / base`` rounded, or None when either is missing or zero."""
    return None if not value or not base else round(value / base, 4)


# -- reading /proc ------------------------------------------------------------------------------
def read_processes(proc: Path = PROC) -> dict[int, ProcessCpu]:
    """Every process's CPU counters now (processes that vanish while read are skipped)."""
    ticks = float(os.sysconf("SC_CLK_TCK"))
    processes = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                process = parse_stat((entry / "stat").read_text(), ticks)
                processes[process.pid] = process
    return processes


def sample(groups: Mapping[str, Iterable[int]], proc: Path = PROC) -> CpuSample:
    """CPU seconds of each group of root pids (and descendants), and of the machine."""
    ticks = float(os.sysconf("SC_CLK_TCK"))
    at = time.monotonic()
    processes = read_processes(proc)
    machine = parse_machine((proc / "stat").read_text(), ticks)
    return CpuSample(
        at, {name: tree_cpu_s(processes, roots) for name, roots in groups.items()}, machine
    )
