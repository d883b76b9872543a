"""Physical backups: WAL archiving, base backups, and point-in-time recovery into a new cluster.

Logical dumps restore a moment only; PITR needs a base backup (``pg_basebackup``) plus every
WAL segment archived since. The server archives with ``archive_command`` into a local folder
(``archive_settings``, used by the stack's config and by the drills alike); a restore copies a
base backup into a fresh data folder, replays archived WAL up to a timestamp and promotes.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from backup.cluster import LocalCluster, wait_out_of_recovery
from backup.errors import BackupError, BackupNotFoundError
from backup.pgtools import binary, client_env, give_to_server_user, run_tool
from backup.wal_retention import BaseBackupInfo
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
    """One ``pg_basebackup`` folder and what retention and restores need to know about it."""

    folder: Path
    taken_at: datetime
    #: End of the backup: the earliest time it can restore to. None for old backups.
    finished_at: datetime | None = None
    #: The WAL file its replay starts from (``START WAL LOCATION`` of its backup_label).
    start_segment: str | None = None
    #: ``pg_verifybackup`` passed on it when it was taken.
    verified: bool = False

    @property
    def name(self) -> str:
        return self.folder.name

    @classmethod
    def read(cls, folder: Path) -> BaseBackup:
        try:
            info = json.loads((folder / BASE_INFO).read_text(encoding="utf-8"))
            finished = info.get("finished_at")
            return cls(
                folder,
                datetime.fromisoformat(info["taken_at"]),
                finished_at=datetime.fromisoformat(finished) if finished else None,
                start_segment=info.get("start_segment") or label_start_segment(folder),
                verified=bool(info.get("verified", False)),
            )
        except (OSError, ValueError, KeyError) as exc:
            raise BackupNotFoundError(
                f"{folder} is not a base backup; take one with `bitvelocity backup base`"
            ) from exc

    def info(self) -> BaseBackupInfo:
        return BaseBackupInfo(
            self.name, self.taken_at, self.finished_at, self.start_segment, self.verified
        )


def label_start_segment(folder: Path) -> str | None:
    """The WAL file named by ``START WAL LOCATION: 0/2000028 (file 0000...02)`` in backup_label."""
    try:
        label = (folder / "backup_label").read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"^START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)", label, re.MULTILINE)
    return match.group(1) if match else None


def take_base_backup(pg: PostgresSettings, root: Path) -> BaseBackup:
    """``pg_basebackup`` of the whole cluster into ``root/<time>``, WAL streamed alongside.

    ``pg_verifybackup`` then checks every file against the backup's manifest and that the
    streamed WAL parses; only a verified backup counts for WAL retention.
    """
    taken_at = datetime.now(UTC)
    folder = root / taken_at.strftime("%Y%m%dT%H%M%S.%fZ")
    root.mkdir(parents=True, exist_ok=True)
    try:
        with client_env(pg) as env:
            command = [binary("pg_basebackup"), "-D", str(folder), "-Fp", "-X", "stream"]
            run_tool([*command, "-c", "fast", "--no-password"], what="pg_basebackup", env=env)
        finished_at = datetime.now(UTC)
        run_tool([binary("pg_verifybackup"), str(folder)], what=f"pg_verifybackup of {folder}")
    except BackupError:
        shutil.rmtree(folder, ignore_errors=True)  # a failed backup must not hold disk
        raise
    info = {
        "taken_at": taken_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "start_segment": label_start_segment(folder),
        "verified": True,
    }
    (folder / BASE_INFO).write_text(json.dumps(info), "utf-8")
    return BaseBackup.read(folder)


def base_backups(root: Path) -> list[BaseBackup]:
    if not root.is_dir():
        return []
    return [BaseBackup.read(p) for p in sorted(root.iterdir()) if (p / BASE_INFO).is_file()]


def restorable_from(backup: BaseBackup) -> datetime:
    """The earliest target time ``backup`` reaches: its end (its start for old backups)."""
    return backup.finished_at or backup.taken_at


def base_for(root: Path, target: datetime) -> BaseBackup:
    """The newest base backup that ended before ``target``.

    A target before every kept backup is refused: its base backup (and the WAL after it)
    was pruned by retention or never taken.
    """
    kept = base_backups(root)
    usable = [b for b in kept if restorable_from(b) < target]
    if not usable:
        if not kept:
            raise BackupNotFoundError(
                f"no base backup in {root}; PITR can only reach times after a base backup "
                "(`bitvelocity backup base`)"
            )
        oldest = kept[0]
        raise BackupNotFoundError(
            f"cannot restore to {target.isoformat()}: it is before the end of the oldest kept "
            f"base backup {oldest.name} ({restorable_from(oldest).isoformat()}); older base "
            "backups and their WAL were pruned by retention (BV_BACKUP__BASE_RETENTION, "
            "BV_BACKUP__WAL_MIN_AGE_S) or never taken. Choose a time after "
            f"{restorable_from(oldest).isoformat()}"
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


def restore_point_in_time(
    pg: PostgresSettings, base_root: Path, wal_dir: Path, cluster: LocalCluster, target: datetime
) -> None:
    """PITR into the new ``cluster``: the newest usable base backup, WAL replayed to ``target``,
    and wait (up to 10 minutes) until it is out of recovery and takes writes."""
    restore_to_time(base_for(base_root, target), wal_dir, cluster, target)
    asyncio.run(wait_out_of_recovery(cluster.settings(pg), timeout_s=600))
