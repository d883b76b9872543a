"""Errors of the backup and recovery commands, by class (see config/errors.py)."""

from __future__ import annotations

from config.errors import PermanentError


class BackupError(PermanentError):
    """A backup could not be taken, found, verified or restored."""


class BackupNotFoundError(BackupError):
    """No backup of that name exists in the configured target."""


class BackupCorruptError(BackupError):
    """A backup's files do not match its manifest or cannot be read by pg_restore."""


class ReplicaError(BackupError):
    """The streaming replica could not be created, inspected or promoted."""
