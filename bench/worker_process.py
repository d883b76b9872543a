"""One ``bitvelocity worker --agents analytics`` subprocess, measured from outside.

A benchmark that runs the worker in its own process measures what an operator sees: the
worker's own peak RSS (``VmHWM``) and CPU seconds from ``/proc``, and when its HTTP views
answer. Linux only (``/proc``).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class AnalyticsWorkerProcess:
    """Start, kill, stop; peak RSS, CPU seconds; the views' answers."""

    def __init__(self, environment: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.token = secrets.token_urlsafe(16)
        self.log = log
        self.environ = {
            **os.environ,
            **environment,
            "BV_WEB__HOST": "127.0.0.1",
            "BV_WEB__PORT": str(self.port),
            "BV_WEB__TOKEN": self.token,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> None:
        with self.log.open("ab") as handle:  # the child keeps its copy
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cli.main",
                    "worker",
                    "--no-metrics",
                    "--agents",
                    "analytics",
                ],
                env=self.environ,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        self.started = time.monotonic()

    def running(self) -> subprocess.Popen[bytes]:
        process = self.process
        if process is None:
            raise RuntimeError("the analytics worker was not started")
        if process.poll() is not None:
            raise RuntimeError(f"the analytics worker exited: {self.tail()}")
        return process

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: a crash, no final commit."""
        process = self.running()
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    def stop(self, timeout_s: float = 30) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    # -- what /proc says ----------------------------------------------------------------------
    def status_mb(self, field: str) -> float:
        """``VmRSS`` / ``VmHWM`` (peak) of the worker process in MB."""
        pid = self.running().pid
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"/proc/{pid}/status has no {field}")

    def cpu_s(self) -> float:
        """User plus system CPU seconds the worker used so far."""
        pid = self.running().pid
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    # -- the views ----------------------------------------------------------------------------
    def get(self, path: str) -> httpx.Response:
        return httpx.get(
            f"http://127.0.0.1:{self.port}{path}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )

    def answer(self, path: str) -> dict[str, Any] | None:
        """The view's JSON, or None while the worker is not answering (starting, replaying)."""
        self.running()
        try:
            response = self.get(path)
        except httpx.TransportError:
            return None
        return response.json() if response.status_code == 200 else None
