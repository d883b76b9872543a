"""``bitvelocity`` worker processes for fault tests, never left running after a test.

One helper for every fault test that runs a worker as its own process (so SIGKILL is a
real process death): ``started_workers`` is the fixture that kills what a failing test
left behind, ``start_cli`` starts ``python -m streams.cli <args>`` with extra environment,
its output appended to a log file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest


@pytest.fixture
def started_workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """A list the test's workers go into; whatever still runs at the end is killed."""
    workers: list[subprocess.Popen[bytes]] = []
    yield workers
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def start_cli(
    workers: list[subprocess.Popen[bytes]],
    args: Sequence[str],
    env: Mapping[str, str],
    log: Path,
) -> subprocess.Popen[bytes]:
    """``bitvelocity <args>`` as a child process with ``env`` added to ours."""
    with log.open("ab") as handle:  # the child keeps its own copy of the descriptor
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", *args],
            env={**os.environ, **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    workers.append(worker)
    return worker
