"""``bitvelocity backup prune``: apply the WAL retention plan to the folders on disk.

The decision is ``backup.wal_retention.plan_retention`` (pure); this module reads the base
backups and the WAL archive, and deletes what the plan allows: expired base backups first,
then archived WAL files oldest first. A crash half-way therefore leaves extra WAL behind
(pruned by the next run), never a kept base backup without its WAL.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backup.errors import BackupError
from backup.wal import base_backups
from backup.wal_retention import ArchivedFile, RetentionPlan, RetentionPolicy, plan_retention
from config.settings import Settings


def base_backup_root(settings: Settings) -> Path:
    """Where ``bitvelocity backup base`` keeps physical base backups."""
    return settings.backup.backups_root(settings.stack.state_dir) / "base"


def retention_policy(settings: Settings) -> RetentionPolicy:
    backup = settings.backup
    return RetentionPolicy(
        keep_backups=backup.base_retention,
        min_age=timedelta(seconds=backup.wal_min_age_s),
        pitr_target=backup.pitr_target,
    )


def archive_files(wal_dir: Path) -> list[ArchivedFile]:
    """Every regular file of the WAL archive with its modification time and size."""
    if not wal_dir.is_dir():
        raise BackupError(
            f"WAL archive {wal_dir} does not exist; is archiving on (BV_BACKUP__WAL_ARCHIVING) "
            "and has the stack started once?"
        )
    found = []
    with os.scandir(wal_dir) as entries:
        for entry in entries:
            if not entry.is_file(follow_symlinks=False):
                continue
            info = entry.stat(follow_symlinks=False)
            modified = datetime.fromtimestamp(info.st_mtime, UTC)
            found.append(ArchivedFile(entry.name, modified, info.st_size))
    return found


def prune_wal_archive(
    base_root: Path,
    wal_dir: Path,
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> RetentionPlan:
    """Plan retention over ``base_root`` and ``wal_dir``; unless ``dry_run``, carry it out."""
    backups = base_backups(base_root)
    plan = plan_retention(
        [b.info() for b in backups], archive_files(wal_dir), policy, now or datetime.now(UTC)
    )
    if dry_run:
        return plan
    expired = {b.name for b in plan.expired_backups}
    for backup in backups:
        if backup.name in expired:
            shutil.rmtree(backup.folder)
    for item in plan.prunable:  # sorted by name: oldest first
        (wal_dir / item.name).unlink(missing_ok=True)
    return plan


def describe(plan: RetentionPlan, *, dry_run: bool) -> list[str]:
    """The lines ``backup prune`` (and ``backup base``) print about a plan."""
    verb = "would remove" if dry_run else "removed"
    lines = [plan.reason]
    if plan.keep_from is not None:
        lines.append(
            f"{verb} {len(plan.expired_backups)} base backup(s) and {len(plan.prunable)} WAL "
            f"file(s) ({plan.prunable_bytes / 1e6:.1f} MB); kept {len(plan.kept)} WAL file(s) "
            f"({plan.kept_bytes / 1e6:.1f} MB)"
        )
    else:
        lines.append(f"kept {len(plan.kept)} WAL file(s) ({plan.kept_bytes / 1e6:.1f} MB)")
    return lines
