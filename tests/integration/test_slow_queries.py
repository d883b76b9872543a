"""`bitvelocity db slow-queries` against a throw-away PostgreSQL 15 cluster of its own.

The shared stack's PostgreSQL cannot be restarted by tests, so this starts a private cluster
(initdb as the ``postgres`` OS user under /var/tmp, a free loopback port, trust auth on
loopback only), restarts it with and without the library, and removes it at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest

from config.errors import StatementStatsUnavailableError
from config.settings import PostgresSettings
from observability.slow_queries import SlowStatement, ensure_extension, slow_statements
from sinks.postgres.connection import connect
from stack.tools import postgres_bindir
from tests.local_resources import free_port

T = TypeVar("T")


class ThrowAwayCluster:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bv-slowq-", dir="/var/tmp"))
        self.data = self.root / "data"
        self.port = free_port()
        self.preload: bool | None = None
        self.bindir = postgres_bindir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "-E", "UTF8", "--no-locale",
        )  # fmt: skip

    def configure(self, *, preload: bool) -> None:
        """(Re)start the cluster with or without pg_stat_statements preloaded."""
        if self.preload == preload:
            return
        if self.preload is not None:
            self._pg_ctl("stop", "-m", "fast")
        lines = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.root}'",
            "shared_buffers = 16MB",
            "max_connections = 20",
        ]
        if preload:
            lines.append("shared_preload_libraries = 'pg_stat_statements'")
        (self.data / "postgresql.auto.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._pg_ctl("start", "-l", str(self.root / "server.log"))
        self.preload = preload

    def _pg_ctl(self, action: str, *extra: str) -> None:
        pg_ctl = str(self.bindir / "pg_ctl")
        self._run(pg_ctl, "-D", str(self.data), "-w", "-t", "60", *extra, action)

    def stop(self) -> None:
        if self.preload is not None:
            self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def settings(self) -> PostgresSettings:
        # This test's own cluster, made by initdb -U postgres with trust: its superuser.
        return PostgresSettings(port=self.port, database="postgres", admin_user="postgres")


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowAwayCluster]:
    instance = ThrowAwayCluster()
    try:
        instance.init()
        yield instance
    finally:
        instance.stop()


def run(cluster: ThrowAwayCluster, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def go() -> T:
        connection = await connect(cluster.settings)
        try:
            return await work(connection)
        finally:
            await connection.close()

    return asyncio.run(go())


def test_without_the_library_the_report_is_a_clear_error(cluster: ThrowAwayCluster) -> None:
    cluster.configure(preload=False)
    assert run(cluster, ensure_extension) is False  # safe no-op on every `stack up`
    with pytest.raises(StatementStatsUnavailableError, match=r"not loaded.*restarts"):
        run(cluster, slow_statements)


def test_loaded_but_not_created_names_the_fix(cluster: ThrowAwayCluster) -> None:
    cluster.configure(preload=True)
    run(cluster, lambda c: c.execute("DROP EXTENSION IF EXISTS pg_stat_statements"))
    with pytest.raises(StatementStatsUnavailableError, match="CREATE EXTENSION"):
        run(cluster, slow_statements)


def test_lists_statements_above_the_mean_threshold_with_calls_and_totals(
    cluster: ThrowAwayCluster,
) -> None:
    cluster.configure(preload=True)

    async def workload(connection: asyncpg.Connection) -> None:
        assert await ensure_extension(connection)
        await connection.execute("SELECT pg_stat_statements_reset()")
        for _ in range(2):
            await connection.execute("SELECT pg_sleep(0.3)")
        for _ in range(20):
            await connection.fetchval("SELECT 1 + 1")

    run(cluster, workload)

    async def report(connection: asyncpg.Connection) -> list[SlowStatement]:
        return await slow_statements(connection, min_mean_ms=250, limit=20)

    rows = run(cluster, report)
    assert [row.query for row in rows] == ["SELECT pg_sleep($1)"]
    [row] = rows
    assert row.calls == 2
    assert 300 <= row.mean_ms < 1000
    assert 600 <= row.total_ms < 2000
    assert row.role == "postgres"
    assert row.database == "postgres"

    async def default_report(connection: asyncpg.Connection) -> list[SlowStatement]:
        return await slow_statements(connection)  # 1 s default: 0.3 s is not slow

    assert run(cluster, default_report) == []


def test_cli_prints_the_report_as_json(cluster: ThrowAwayCluster, tmp_path: Path) -> None:
    cluster.configure(preload=True)

    async def workload(connection: asyncpg.Connection) -> None:
        await ensure_extension(connection)
        await connection.execute("SELECT pg_sleep(0.2)")

    run(cluster, workload)
    env = {
        **os.environ,
        "BV_STACK__STATE_DIR": str(tmp_path),
        "BV_POSTGRES__PORT": str(cluster.port),
        "BV_POSTGRES__DATABASE": "postgres",
        "BV_POSTGRES__ADMIN_USER": "postgres",
        "BV_POSTGRES__ADMIN_PASSWORD": "",
    }
    command = [sys.executable, "-m", "cli", "db", "slow-queries"]
    result = subprocess.run(
        [*command, "--min-mean-ms", "150", "--limit", "5", "--json"],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert any(row["query"] == "SELECT pg_sleep($1)" and row["calls"] >= 1 for row in listed)
