"""Which base backups and archived WAL files may go: the retention rule, pure (no I/O).

The rule is pgBackRest's and Barman's: WAL is worth keeping only from the start of a base
backup someone may restore from. We keep every base backup from the oldest one still needed,
and every archived WAL file from that backup's start segment on. "Still needed" is the union
of: the N newest verified base backups (``BV_BACKUP__BASE_RETENTION``), every base backup
started within the minimum age (``BV_BACKUP__WAL_MIN_AGE_S``), and the base backup a
configured point-in-time target restores from (``BV_BACKUP__PITR_TARGET``). Files younger
than the minimum age stay too, whatever their position.

The invariant: a plan never marks a file prunable unless it can show that every kept base
backup starts at or after it. Whenever it cannot (too few verified backups, a backup whose
start segment is unknown, a target no backup reaches, start positions that do not grow with
time), the plan prunes nothing and its ``reason`` says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

#: ``TTTTTTTTXXXXXXXXYYYYYYYY`` (timeline, log, segment) plus the archive's other files:
#: ``.partial`` segments, ``<segment>.<offset>.backup`` labels and ``<timeline>.history``.
_SEGMENT = re.compile(
    r"^(?P<tli>[0-9A-F]{8})(?P<log>[0-9A-F]{8})(?P<seg>[0-9A-F]{8})"
    r"(?:\.partial|\.[0-9A-F]{8}\.backup)?$"
)
_HISTORY = re.compile(r"^[0-9A-F]{8}\.history$")


@dataclass(frozen=True, order=True)
class WalPosition:
    """Where a WAL file lies: its timeline and its (log, segment) number within it."""

    timeline: int
    log: int
    segment: int

    @property
    def place(self) -> tuple[int, int]:
        """Position along the WAL stream, independent of the timeline."""
        return (self.log, self.segment)


def wal_position(name: str) -> WalPosition | None:
    """The position of an archived segment, ``.partial`` or ``.backup`` label; else None.

    Timeline history files and anything unknown give None: the plan never prunes them.
    """
    match = _SEGMENT.match(name)
    if match is None:
        return None
    return WalPosition(int(match["tli"], 16), int(match["log"], 16), int(match["seg"], 16))


def is_history_file(name: str) -> bool:
    return _HISTORY.match(name) is not None


@dataclass(frozen=True)
class BaseBackupInfo:
    """What retention needs to know about one base backup."""

    name: str
    started_at: datetime
    #: When the backup ended (its consistency point); None when unknown.
    finished_at: datetime | None
    #: The WAL file of its ``START WAL LOCATION``; None when unknown.
    start_segment: str | None
    #: ``pg_verifybackup`` passed on it.
    verified: bool

    @property
    def usable(self) -> bool:
        """Verified, with a known start segment and end: retention may rely on it."""
        return (
            self.verified
            and self.finished_at is not None
            and self.start_segment is not None
            and wal_position(self.start_segment) is not None
        )


@dataclass(frozen=True)
class ArchivedFile:
    name: str
    modified_at: datetime
    bytes: int


@dataclass(frozen=True)
class RetentionPolicy:
    keep_backups: int
    min_age: timedelta
    pitr_target: datetime | None = None


@dataclass(frozen=True)
class RetentionPlan:
    """What a prune run keeps and removes; ``reason`` explains the boundary (or its absence)."""

    reason: str
    #: The oldest base backup kept; None when nothing is pruned.
    keep_from: BaseBackupInfo | None = None
    expired_backups: tuple[BaseBackupInfo, ...] = ()
    prunable: tuple[ArchivedFile, ...] = ()
    kept: tuple[ArchivedFile, ...] = ()

    @property
    def prunable_bytes(self) -> int:
        return sum(f.bytes for f in self.prunable)

    @property
    def kept_bytes(self) -> int:
        return sum(f.bytes for f in self.kept)


def _keep_everything(archive: list[ArchivedFile], reason: str) -> RetentionPlan:
    return RetentionPlan(reason=f"nothing pruned: {reason}", kept=tuple(archive))


class _KeepEverything(Exception):  # noqa: N818 - a decision, not an error
    """Retention cannot prove what is safe to delete: keep it all, for this reason."""


def plan_retention(
    backups: list[BaseBackupInfo],
    archive: list[ArchivedFile],
    policy: RetentionPolicy,
    now: datetime,
) -> RetentionPlan:
    """Decide which base backups expire and which archived WAL files may be deleted."""
    ordered = sorted(backups, key=lambda b: b.started_at)
    young_since = now - policy.min_age
    try:
        needed, why = _needed_backups(ordered, policy, young_since)
        keep_from = min(needed, key=lambda b: b.started_at)
        cutoff = _cutoff(ordered, keep_from)
    except _KeepEverything as keep:
        return _keep_everything(archive, str(keep))
    prunable, kept = [], []
    for item in sorted(archive, key=lambda f: f.name):
        position = wal_position(item.name)
        if (
            position is not None
            and item.modified_at < young_since
            and position.timeline <= cutoff.timeline
            and position.place < cutoff.place
        ):
            prunable.append(item)
        else:
            kept.append(item)
    return RetentionPlan(
        reason=(
            f"keeping base backup {keep_from.name} and newer ({why}) and WAL from "
            f"{keep_from.start_segment} on"
        ),
        keep_from=keep_from,
        expired_backups=tuple(b for b in ordered if b.started_at < keep_from.started_at),
        prunable=tuple(prunable),
        kept=tuple(kept),
    )


def _needed_backups(
    ordered: list[BaseBackupInfo], policy: RetentionPolicy, young_since: datetime
) -> tuple[list[BaseBackupInfo], str]:
    """The base backups retention must keep, and why (raises ``_KeepEverything``)."""
    usable = [b for b in ordered if b.usable]
    if len(usable) < policy.keep_backups:
        raise _KeepEverything(
            f"{len(usable)} verified base backup(s), retention keeps {policy.keep_backups} "
            "(BV_BACKUP__BASE_RETENTION); take one with `bitvelocity backup base`"
        )
    needed = [usable[-policy.keep_backups]]
    why = f"the {policy.keep_backups} newest verified base backups"
    for backup in ordered:
        if backup.started_at >= young_since and backup.started_at < needed[0].started_at:
            if not backup.usable:
                raise _KeepEverything(
                    f"base backup {backup.name} is younger than the minimum age but unverified "
                    "or without a known start segment"
                )
            needed.append(backup)
            why += " and those within the minimum age"
            break  # ordered by time: the first one found is the oldest
    target = policy.pitr_target
    if target is not None:
        reaching = [b for b in usable if b.finished_at is not None and b.finished_at <= target]
        if not reaching:
            raise _KeepEverything(
                f"the point-in-time target {target.isoformat()} (BV_BACKUP__PITR_TARGET) is "
                "before the end of every verified base backup, so no kept backup can prove "
                "which WAL it needs"
            )
        needed.append(reaching[-1])
        why += f" and the one the target {target.isoformat()} restores from"
    return needed, why


def _cutoff(ordered: list[BaseBackupInfo], keep_from: BaseBackupInfo) -> WalPosition:
    """The first WAL position the kept backups need; every kept backup must start at or
    after it, or WAL positions do not grow with time (raises ``_KeepEverything``)."""
    cutoff = wal_position(keep_from.start_segment or "")
    if cutoff is None:  # usable backups have a parseable start segment
        raise _KeepEverything(f"base backup {keep_from.name} has no start segment")
    for backup in (b for b in ordered if b.started_at >= keep_from.started_at):
        position = wal_position(backup.start_segment or "")
        if position is None:
            continue  # newer than keep_from, so it starts after the cutoff on this cluster
        if position.place < cutoff.place or position.timeline < cutoff.timeline:
            raise _KeepEverything(
                f"base backup {backup.name} starts at {backup.start_segment}, before the older "
                f"{keep_from.name} ({keep_from.start_segment}): WAL positions do not grow with "
                "time (a new cluster or timeline?)"
            )
    return cutoff
