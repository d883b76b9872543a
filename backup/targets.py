"""Where finished backups are kept: a pluggable target, with a local folder implementation.

A target stores named backups (a folder of files each) and hands them back as a local folder.
Object storage plugs in as another ``BackupTarget`` (credentials from its own settings, never
from the repository); only the local folder ships.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

from backup.errors import BackupNotFoundError
from config.settings import Settings


class BackupTarget(Protocol):
    """Keeps named backups; every method is synchronous and idempotent."""

    def put(self, name: str, folder: Path) -> None:
        """Store the files of ``folder`` as backup ``name`` (the folder may be consumed)."""

    def names(self) -> list[str]:
        """Stored backup names, oldest first (names sort by creation time)."""

    def fetch(self, name: str) -> Path:
        """A local folder holding backup ``name``'s files."""

    def delete(self, name: str) -> None:
        """Remove backup ``name``; no error when it is already gone."""


class LocalFolderTarget:
    """Backups as sub-folders of one local folder; a partial backup is never listed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def staging(self, name: str) -> Path:
        """A fresh folder on the same file system to write a backup into before ``put``."""
        folder = self.root / f".incoming-{name}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, mode=0o700)
        return folder

    def put(self, name: str, folder: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / name
        if folder.parent == self.root:
            folder.rename(final)  # atomic: a backup appears whole or not at all
        else:
            shutil.copytree(folder, final)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").is_file()
        )

    def fetch(self, name: str) -> Path:
        folder = self.root / name
        if not (folder / "manifest.json").is_file():
            raise BackupNotFoundError(
                f"no backup {name} in {self.root}; `bitvelocity backup list` shows the names"
            )
        return folder

    def delete(self, name: str) -> None:
        shutil.rmtree(self.root / name, ignore_errors=True)


def backup_target(settings: Settings) -> LocalFolderTarget:
    """The configured target (``BV_BACKUP__TARGET``); only ``local`` exists today."""
    return LocalFolderTarget(settings.backup.backups_root(settings.stack.state_dir))
