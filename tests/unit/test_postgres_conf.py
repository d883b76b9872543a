"""The stack's PostgreSQL configuration preloads pg_stat_statements (effective at next start)."""

from __future__ import annotations

from pathlib import Path

from config.settings import BackupSettings, Settings, StackSettings
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


def test_generated_conf_archives_wal_into_the_configured_folder(tmp_path: Path) -> None:
    backup = BackupSettings(wal_archive_dir=tmp_path / "wal")
    settings = Settings(stack=StackSettings(state_dir=tmp_path), backup=backup)
    lines = PostgresService(StackContext(settings)).server_conf(Path("/run/bv")).splitlines()
    assert "archive_mode = on" in lines
    assert f"archive_command = 'test ! -f {tmp_path}/wal/%f && cp %p {tmp_path}/wal/%f'" in lines
    off = settings.model_copy(update={"backup": BackupSettings(wal_archiving=False)})
    assert "archive_mode" not in PostgresService(StackContext(off)).server_conf(Path("/run/bv"))
