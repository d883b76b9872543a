"""PostgreSQL stopping under a running command is one `error:` line and exit 2, no traceback.

A fault test (not an integration test) because it stops the stack's PostgreSQL, which the
session fixtures of other modules hold connections to; it starts it again before returning.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from config.settings import Settings
from sinks.postgres.connection import connect
from tests.integration.cli import error_lines, run_cli


async def _orders(settings: Settings) -> int:
    connection = await connect(settings.postgres)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM public.orders"))
    finally:
        await connection.close()


def test_loadgen_losing_postgres_mid_load_prints_one_error_line_and_exits_2(
    settings: Settings,
) -> None:
    assert run_cli("migrate").returncode == 0
    before = asyncio.run(_orders(settings))
    load = subprocess.Popen(
        [sys.executable, "-m", "cli", "loadgen", "--transactions", "1000000", "--rate", "200"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while asyncio.run(_orders(settings)) <= before:  # loading, i.e. mid-transaction from now on
            assert load.poll() is None, load.communicate()[1]
            assert time.monotonic() < deadline, "loadgen wrote no order in 60 s"
            time.sleep(0.2)  # between polls of a condition with a deadline
        stopped = run_cli("stack", "down", "postgres", timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        _, stderr = load.communicate(timeout=60)
    finally:
        if load.poll() is None:
            load.kill()
            load.communicate()
        started = run_cli("stack", "up", "postgres", timeout=300)
    assert started.returncode == 0, started.stderr
    assert load.returncode == 2, stderr
    [line] = error_lines(stderr)
    assert line.startswith("error: lost the connection to PostgreSQL (")
    assert "BV_POSTGRES__PORT" in line
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == line  # nothing after it
