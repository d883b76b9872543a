"""Worker processes of the fault tests: ``bitvelocity`` sub-commands run as real subprocesses
(so a SIGKILL is a real crash), all reaped after each test by ``conftest.no_orphan_workers``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Every worker started by a test; emptied (and killed if still running) after each test.
started: list[subprocess.Popen[bytes]] = []


def start_cli(args: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Run ``bitvelocity <args>``, ``env`` over this environment, output appended to ``log``."""
    with log.open("ab") as handle:  # the child keeps its own copy of the descriptor
        worker = subprocess.Popen(
            [sys.executable, "-m", "cli", *args],
            env={**os.environ, **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    started.append(worker)
    return worker


def reap_all() -> None:
    """A failing test must not leave a worker running into the next test."""
    while started:
        worker = started.pop()
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
