"""The chaos run's ``bitvelocity worker`` subprocesses: start, SIGKILL, restart, stop.

Each worker is a real process (as an operator runs it), so a SIGKILL is a real crash. All
workers share the run's settings and form one consumer group per agent. Logs go to one
file per worker name, appended across restarts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class WorkerPool:
    """Named workers, each running ``agents`` with the environment ``env``."""

    env: dict[str, str]
    log_dir: Path
    agents: dict[str, Sequence[str]]  # worker name -> agents it runs
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    starts: int = 0
    #: Killed on purpose and not restarted yet: not to be revived as a crash.
    held: set[str] = field(default_factory=set)

    def start(self, name: str) -> None:
        """Start ``name``; one process per name (a running one is an error in the caller)."""
        running = self.processes.get(name)
        if running is not None and running.poll() is None:
            raise RuntimeError(f"worker {name} is already running (pid {running.pid})")
        self.held.discard(name)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with (self.log_dir / f"{name}.log").open("ab") as handle:  # the child keeps its copy
            self.processes[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cli.main",
                    "worker",
                    "--no-metrics",
                    *[a for agent in self.agents[name] for a in ("--agents", agent)],
                    "--worker-id",
                    f"{name}-{self.starts}",
                ],
                env={**os.environ, **self.env},
                stdout=handle,
                stderr=subprocess.STDOUT,
            )

    def start_all(self) -> None:
        for name in self.agents:
            self.start(name)

    def kill(self, name: str) -> None:
        """SIGKILL: no clean shutdown, no final commit. It stays down until ``start``."""
        self.held.add(name)
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(30)

    def revive_dead(self) -> list[str]:
        """Restart every worker that exited (a crash of its own); returns their names."""
        dead = [n for n, p in self.processes.items() if p.poll() is not None and n not in self.held]
        for name in dead:
            self.start(name)
        return dead

    def stop_all(self, timeout_s: float = 20) -> None:
        """SIGTERM, then SIGKILL whatever did not exit in time."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
