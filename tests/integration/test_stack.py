"""The stack is real: every service answers, `up` is idempotent, `status` reports ports."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import subprocess
import time
from pathlib import Path

import pytest

from config.errors import ServiceStartError
from config.settings import Settings
from sinks.postgres.connection import connect
from stack.manager import SERVICE_NAMES, Stack
from stack.postgres_service import PostgresService
from tests.integration.cli import run_cli

cli = run_cli


def test_status_lists_every_service_ready_with_its_ports(settings: Settings) -> None:
    result = cli("stack", "status", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) == set(SERVICE_NAMES)
    assert all(row["state"] == "ready" for row in rows.values())
    assert f":{settings.postgres.port}" in rows["postgres"]["addresses"]
    assert f":{settings.redis.port}" in rows["redis"]["addresses"]
    assert "Debezium PostgresConnector" in rows["connect"]["detail"]
    assert "Apicurio" in rows["registry"]["detail"]
    assert "wal_level=logical" in rows["postgres"]["detail"]


def test_second_up_is_fast_and_leaves_running_services_alone(settings: Settings) -> None:
    before = {row.name: row.pid for row in Stack(settings).status()}
    started = time.monotonic()
    result = cli("stack", "up", "--quiet")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    after = {row.name: row.pid for row in Stack(settings).status()}
    assert after == before
    assert elapsed < 60, f"warm up took {elapsed:.1f} s"


def test_every_service_listens_on_loopback_only(settings: Settings) -> None:
    for service in Stack(settings).services:
        for endpoint in service.endpoints():
            assert endpoint.host == "127.0.0.1", (service.name, endpoint)


def test_a_port_held_by_another_program_is_a_one_line_error_naming_the_setting(
    tmp_path: Path,
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = cli(
            "stack",
            "up",
            "redis",
            env={"BV_STACK__STATE_DIR": str(tmp_path / "state"), "BV_REDIS__PORT": str(port)},
            timeout=60,
        )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert f"port {port}" in errors[0]
    assert "BV_REDIS__PORT" in errors[0]
    assert "Traceback" not in result.stderr


def test_a_port_taken_as_a_connections_source_port_names_the_connection_then_up_works(
    tmp_path: Path,
) -> None:
    """The issue-25 failure: no listener, only a client whose ephemeral source port is ours."""
    env = {"BV_STACK__STATE_DIR": str(tmp_path / "state")}
    with socket.socket() as server, socket.socket() as client:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client.bind(("127.0.0.1", 0))
        port, server_port = client.getsockname()[1], server.getsockname()[1]
        client.connect(server.getsockname())
        env["BV_REDIS__PORT"] = str(port)
        result = cli("stack", "up", "redis", env=env, timeout=60)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr
    assert len(errors) == 1, result.stderr
    line = errors[0]
    assert f"port {port}" in line
    assert "BV_REDIS__PORT" in line
    assert "established connection" in line
    assert f"127.0.0.1:{port} -> 127.0.0.1:{server_port}" in line
    assert "Traceback" not in result.stderr
    # The connection closed, the same port starts (TIME_WAIT does not count as taken).
    try:
        started = cli("stack", "up", "redis", "--quiet", env=env, timeout=60)
        assert started.returncode == 0, started.stderr
    finally:
        cli("stack", "down", "redis", env=env, timeout=60)


def test_restarting_a_service_while_clients_hold_connections_never_finds_its_port_taken(
    settings: Settings,
) -> None:
    """With the default band below the ephemeral range, restarts do not race client ports.

    CI cycles Redis with a dozen live clients; `bitvelocity stack cycle` runs the long version
    over every service (docs/decisions/0018-ports-outside-the-ephemeral-range.md).
    """
    result = cli("stack", "cycle", "redis", "--times", "5", "--clients", "12", timeout=240)
    assert result.returncode == 0, result.stderr
    assert "5 of 5 restarts of redis ok" in result.stdout, result.stdout


def test_unknown_service_name_is_refused() -> None:
    result = cli("stack", "up", "zookeeper")
    assert result.returncode == 2
    assert "unknown service(s) zookeeper" in result.stderr


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_logs_prints_the_service_log(service: str) -> None:
    result = cli("stack", "logs", service, "--lines", "5")
    assert result.returncode == 0, result.stderr
    assert f"{service}" in result.stdout


def test_a_cluster_from_before_0016_is_refused_with_what_to_do(settings: Settings) -> None:
    """Its app database is owned by the superuser: `stack up` says so instead of half-working."""
    service = Stack(settings).service("postgres")
    assert isinstance(service, PostgresService)
    name = f"bv_stale_{secrets.token_hex(3)}"
    # As the bootstrap superuser, over the socket: how an earlier `stack up` made the database.
    service.psql_as_superuser(f'CREATE DATABASE "{name}"', database="postgres")
    stale = settings.model_copy(
        update={"postgres": settings.postgres.model_copy(update={"database": name})}
    )
    try:
        with pytest.raises(ServiceStartError, match=r"owned by a superuser.*delete"):
            Stack(stale).service("postgres").after_ready(lambda _: None)
    finally:
        service.psql_as_superuser(f'DROP DATABASE IF EXISTS "{name}"', database="postgres")


def _files_bytes(folder: Path) -> int:
    """The oracle for a folder size: find's own byte counts of the regular files in it."""
    listed = subprocess.run(
        ["find", str(folder), "-type", "f", "-printf", "%s\\n"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return sum(int(size) for size in listed.split())


async def _slot_retaining_wal(settings: Settings, slot: str) -> int:
    """A physical slot that reserves WAL at once, then some WAL written after it."""
    connection = await connect(settings.postgres)
    try:
        await connection.execute("SELECT pg_create_physical_replication_slot($1, true)", slot)
        await connection.execute("CREATE TEMP TABLE bv_wal_filler AS SELECT 1 AS x")
        retained: int = await connection.fetchval(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
            "FROM pg_replication_slots WHERE slot_name = $1",
            slot,
        )
        return retained
    finally:
        await connection.close()


async def _drop_slot(settings: Settings, slot: str) -> None:
    connection = await connect(settings.postgres)
    try:
        await connection.execute("SELECT pg_drop_replication_slot($1)", slot)
    finally:
        await connection.close()


def test_status_shows_state_sizes_the_wal_archive_and_warns_on_a_slot_over_the_threshold(
    settings: Settings,
) -> None:
    slot = f"bv_test_abandoned_{secrets.token_hex(3)}"
    assert asyncio.run(_slot_retaining_wal(settings, slot)) > 0
    try:
        quiet = cli("stack", "status", "--json")
        warned = cli("stack", "status", env={"BV_MONITORING__SLOT_RETAINED_WAL_WARN_BYTES": "0"})
    finally:
        asyncio.run(_drop_slot(settings, slot))
    assert quiet.returncode == 0, quiet.stderr
    rows = {row["name"]: row for row in json.loads(quiet.stdout)}
    registry_home = Stack(settings).service("registry").home
    assert rows["registry"]["state_bytes"] == _files_bytes(registry_home)
    assert all(row["state_bytes"] > 0 for name, row in rows.items() if name != "connect")
    assert slot not in quiet.stderr  # 1 GiB by default
    assert warned.returncode == 0, warned.stderr
    assert "state size" in warned.stdout
    assert "WAL archive:" in warned.stdout
    warning = " ".join(warned.stderr.split())
    assert f"replication slot {slot} (physical, INACTIVE" in warning
    assert f"pg_drop_replication_slot('{slot}')" in warning
