"""Backup building blocks without a server: commands, settings files, retention, gaps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import SecretStr

from backup.logical import WAREHOUSE_SCHEMAS, apply_retention, backup_name, dump_arguments
from backup.pgtools import client_env
from backup.retention_edge import gaps
from backup.targets import LocalFolderTarget
from backup.wal import archive_settings, recovery_settings
from config.errors import ConfigurationError
from config.settings import PostgresSettings


def test_warehouse_dump_selects_its_schemas_and_oltp_dump_excludes_them() -> None:
    out = Path("/b/x.dump")
    warehouse = dump_arguments("warehouse", "db", out, 6, WAREHOUSE_SCHEMAS)
    oltp = dump_arguments("oltp", "db", out, 6, WAREHOUSE_SCHEMAS)
    assert "--format=custom" in warehouse
    assert "--compress=6" in warehouse
    assert "--schema=bronze" in warehouse
    assert "--exclude-schema=ops" in oltp
    assert not any("password" in arg.lower() for arg in warehouse + oltp)


def test_the_password_travels_in_a_private_passfile_never_in_the_environment() -> None:
    pg = PostgresSettings(port=5999, admin_password=SecretStr("s3cr:et"))
    with client_env(pg) as env:
        passfile = Path(env["PGPASSFILE"])
        assert passfile.stat().st_mode & 0o777 == 0o600
        assert passfile.read_text(encoding="utf-8") == "127.0.0.1:5999:*:bv_admin:s3cr\\:et\n"
        assert "s3cr" not in json.dumps({k: v for k, v in env.items() if k != "PGPASSFILE"})
    assert not passfile.exists()


def test_archive_command_never_overwrites_a_segment() -> None:
    lines = archive_settings(Path("/var/tmp/wal"))
    assert "archive_mode = on" in lines
    assert "archive_command = 'test ! -f /var/tmp/wal/%f && cp %p /var/tmp/wal/%f'" in lines
    with pytest.raises(ConfigurationError, match="WAL_ARCHIVE_DIR"):
        archive_settings(Path("/tmp/it's"))


def test_recovery_target_is_written_in_utc_and_needs_a_zone() -> None:
    paris = timezone(timedelta(hours=1))
    lines = recovery_settings(Path("/w"), datetime(2026, 1, 2, 13, 0, 0, 5, tzinfo=paris))
    assert "recovery_target_time = '2026-01-02 12:00:00.000005+00'" in lines
    assert "restore_command = 'cp /w/%f %p'" in lines
    with pytest.raises(ConfigurationError, match="time zone"):
        recovery_settings(Path("/w"), datetime(2026, 1, 2))  # noqa: DTZ001


def test_retention_keeps_the_newest_backups_and_ignores_partial_ones(tmp_path: Path) -> None:
    target = LocalFolderTarget(tmp_path)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    names = [backup_name(start + timedelta(hours=h)) for h in range(4)]
    for name in names:
        staging = target.staging(name)
        (staging / "manifest.json").write_text("{}", encoding="utf-8")
        target.put(name, staging)
    target.staging("partial")  # an interrupted backup is never listed nor counted
    assert apply_retention(target, 2) == names[:2]
    assert target.names() == names[2:]


def test_a_restored_offset_behind_the_log_start_is_a_gap() -> None:
    resume = {("t", 0): 10, ("t", 1): 50, ("u", 0): 0}
    log_start = {("t", 0): 40, ("t", 1): 40, ("u", 0): 0}
    [gap] = gaps(resume, log_start)
    assert (gap.topic, gap.partition, gap.lost) == ("t", 0, 30)
