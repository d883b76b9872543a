"""Physical backups: WAL archiving, base backups, and point-in-time recovery into a new cluster.

Logical dumps restore a moment only; PITR needs a base backup (``pg_basebackup``) plus every
WAL segment archived since. The server archives with ``archive_command`` into a local folder
(``archive_settings``, used by the stack's config and by the drills alike); a restore copies a
base backup into a fresh data folder, replays archived WAL up to a timestamp and promotes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from backup.cluster import LocalCluster
from backup.errors import BackupError, BackupNotFoundError
from backup.pgtools import binary, client_env, give_to_server_user, run_tool
from config.errors import ConfigurationError
from config.settings import PostgresSettings

BASE_INFO = "bitvelocity-base.json"


def archive_settings(wal_dir: Path) -> list[str]:
    """Server settings that archive every finished WAL segment into ``wal_dir`` (never twice)."""
    if "'" in str(wal_dir) or " " in str(wal_dir):
        raise ConfigurationError(
            f"WAL archive folder {wal_dir} contains a quote or space; "
            "set BV_BACKUP__WAL_ARCHIVE_DIR to a plain path"
        )
    return [
        "archive_mode = on",
        f"archive_command = 'test ! -f {wal_dir}/%f && cp %p {wal_dir}/%f'",
        "archive_timeout = 60",
    ]


def recovery_settings(wal_dir: Path, target: datetime) -> list[str]:
    """Settings of a cluster replaying archived WAL up to ``target`` (then promoting)."""
    if target.tzinfo is None:
        raise ConfigurationError("the recovery target needs a time zone, e.g. 2026-01-01T12:00Z")
    stamp = target.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    return [
        "archive_mode = off",
        f"restore_command = 'cp {wal_dir}/%f %p'",
        f"recovery_target_time = '{stamp}'",
        "recovery_target_action = 'promote'",
    ]


@dataclass(frozen=True)
class BaseBackup:
    folder: Path
    taken_at: datetime

    @classmethod
    def read(cls, folder: Path) -> BaseBackup:
        try:
            info = json.loads((folder / BASE_INFO).read_text(encoding="utf-8"))
            return cls(folder, datetime.fromisoformat(info["taken_at"]))
        except (OSError, ValueError, KeyError) as exc:
            raise BackupNotFoundError(
                f"{folder} is not a base backup; take one with `bitvelocity backup base`"
            ) from exc


def take_base_backup(pg: PostgresSettings, root: Path) -> BaseBackup:
    """``pg_basebackup`` of the whole cluster into ``root/<time>``, WAL streamed alongside."""
    taken_at = datetime.now(UTC)
    folder = root / taken_at.strftime("%Y%m%dT%H%M%S.%fZ")
    root.mkdir(parents=True, exist_ok=True)
    with client_env(pg) as env:
        command = [binary("pg_basebackup"), "-D", str(folder), "-Fp", "-X", "stream"]
        run_tool([*command, "-c", "fast", "--no-password"], what="pg_basebackup", env=env)
    (folder / BASE_INFO).write_text(json.dumps({"taken_at": taken_at.isoformat()}), "utf-8")
    return BaseBackup(folder, taken_at)


def base_backups(root: Path) -> list[BaseBackup]:
    if not root.is_dir():
        return []
    return [BaseBackup.read(p) for p in sorted(root.iterdir()) if (p / BASE_INFO).is_file()]


def base_for(root: Path, target: datetime) -> BaseBackup:
    """The newest base backup finished before ``target``."""
    usable = [b for b in base_backups(root) if b.taken_at < target]
    if not usable:
        raise BackupNotFoundError(
            f"no base backup in {root} older than {target.isoformat()}; PITR can only reach "
            "times after a base backup (`bitvelocity backup base`)"
        )
    return usable[-1]


def restore_to_time(
    base: BaseBackup, wal_dir: Path, cluster: LocalCluster, target: datetime
) -> None:
    """Copy ``base`` into ``cluster``'s (new) data folder, replay WAL to ``target``, start it.

    The caller waits for the end of recovery (``wait_out_of_recovery``).
    """
    if cluster.data_dir.exists():
        raise BackupError(
            f"{cluster.data_dir} exists; restore into a new folder (--data-dir), never over data"
        )
    cluster.data_dir.parent.mkdir(parents=True, exist_ok=True)
    give_to_server_user(cluster.data_dir.parent)
    shutil.copytree(base.folder, cluster.data_dir, symlinks=True)
    (cluster.data_dir / BASE_INFO).unlink()
    (cluster.data_dir / "postmaster.pid").unlink(missing_ok=True)
    (cluster.data_dir / "recovery.signal").touch()
    cluster.data_dir.chmod(0o700)
    give_to_server_user(cluster.data_dir, recursive=True)
    cluster.write_conf(recovery_settings(wal_dir, target))
    cluster.start(timeout_s=120)
