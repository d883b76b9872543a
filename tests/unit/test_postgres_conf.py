"""The stack's PostgreSQL configuration preloads pg_stat_statements (effective at next start)."""

from __future__ import annotations

from pathlib import Path

from config.settings import Settings, StackSettings
from stack.base import StackContext
from stack.postgres_service import PostgresService


def test_generated_conf_preloads_pg_stat_statements_and_keeps_logical_replication(
    tmp_path: Path,
) -> None:
    service = PostgresService(StackContext(Settings(stack=StackSettings(state_dir=tmp_path))))
    lines = service.server_conf(Path("/run/bv")).splitlines()
    assert "shared_preload_libraries = 'pg_stat_statements'" in lines
    assert "wal_level = logical" in lines
    assert "listen_addresses = '127.0.0.1'" in lines
    assert "unix_socket_directories = '/run/bv'" in lines
