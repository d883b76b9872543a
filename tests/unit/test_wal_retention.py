"""The WAL retention decision: which base backups and archived files go, and when none do.

Expected sets are written out by hand from the backups' start segments and times.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backup.wal_retention import (
    ArchivedFile,
    BaseBackupInfo,
    RetentionPlan,
    RetentionPolicy,
    plan_retention,
    wal_position,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def seg(n: int, timeline: int = 1) -> str:
    return f"{timeline:08X}{0:08X}{n:08X}"


def backup(
    name: str, start: int, days_ago: float, *, verified: bool = True, timeline: int = 1
) -> BaseBackupInfo:
    started = NOW - timedelta(days=days_ago)
    return BaseBackupInfo(
        name, started, started + timedelta(minutes=1), seg(start, timeline), verified
    )


def archive(*names: str, days_ago: float = 10) -> list[ArchivedFile]:
    return [ArchivedFile(n, NOW - timedelta(days=days_ago), 16 << 20) for n in names]


#: Segments 1..12 archived long ago; backups start at 3 (day -9), 6 (day -6), 9 (day -3).
SEGMENTS = archive(*(seg(n) for n in range(1, 13)))
BACKUPS = [backup("b1", 3, 9), backup("b2", 6, 6), backup("b3", 9, 3)]
KEEP_TWO = RetentionPolicy(keep_backups=2, min_age=timedelta(0))


def oldest_kept(plan: RetentionPlan) -> str | None:
    return plan.keep_from.name if plan.keep_from else None


def names(files: tuple[ArchivedFile, ...]) -> set[str]:
    return {f.name for f in files}


def test_keeps_wal_from_the_start_of_the_second_newest_verified_backup() -> None:
    plan = plan_retention(BACKUPS, SEGMENTS, KEEP_TWO, NOW)
    assert oldest_kept(plan) == "b2"
    assert [b.name for b in plan.expired_backups] == ["b1"]
    assert names(plan.prunable) == {seg(1), seg(2), seg(3), seg(4), seg(5)}
    assert names(plan.kept) == {seg(n) for n in range(6, 13)}
    assert plan.prunable_bytes == 5 * (16 << 20)


def test_an_unverified_backup_does_not_count_towards_retention() -> None:
    backups = [backup("b1", 3, 9), backup("b2", 6, 6), backup("b3", 9, 3, verified=False)]
    plan = plan_retention(backups, SEGMENTS, KEEP_TWO, NOW)
    assert oldest_kept(plan) == "b1"
    assert names(plan.prunable) == {seg(1), seg(2)}
    assert plan.expired_backups == ()


def test_too_few_verified_backups_keep_everything_and_say_why() -> None:
    plan = plan_retention([backup("b1", 3, 9)], SEGMENTS, KEEP_TWO, NOW)
    assert (plan.prunable, plan.expired_backups) == ((), ())
    assert len(plan.kept) == 12
    assert "1 verified base backup(s), retention keeps 2" in plan.reason


def test_no_backup_at_all_keeps_everything() -> None:
    plan = plan_retention([], SEGMENTS, KEEP_TWO, NOW)
    assert (plan.prunable, plan.keep_from) == ((), None)
    assert plan.reason.startswith("nothing pruned")


def test_files_younger_than_the_minimum_age_stay_whatever_their_position() -> None:
    young = archive(seg(1), seg(2), days_ago=0.01)
    old = archive(seg(4), seg(5))
    policy = RetentionPolicy(keep_backups=2, min_age=timedelta(hours=1))
    plan = plan_retention(BACKUPS, young + old, policy, NOW)
    assert names(plan.prunable) == {seg(4), seg(5)}
    assert names(plan.kept) == {seg(1), seg(2)}


def test_a_backup_within_the_minimum_age_keeps_its_wal_too() -> None:
    policy = RetentionPolicy(keep_backups=2, min_age=timedelta(days=8))
    plan = plan_retention(
        BACKUPS, archive(*(seg(n) for n in range(1, 13)), days_ago=9.5), policy, NOW
    )
    # b1 started 9 days ago: outside 8 days, so b2 is still the oldest kept backup.
    assert oldest_kept(plan) == "b2"
    policy = RetentionPolicy(keep_backups=2, min_age=timedelta(days=9.5))
    plan = plan_retention(
        BACKUPS, archive(*(seg(n) for n in range(1, 13)), days_ago=10), policy, NOW
    )
    assert oldest_kept(plan) == "b1"
    assert names(plan.prunable) == {seg(1), seg(2)}


def test_a_pitr_target_keeps_the_backup_it_restores_from() -> None:
    target = NOW - timedelta(days=8)  # between b1 (day -9) and b2 (day -6)
    policy = RetentionPolicy(keep_backups=2, min_age=timedelta(0), pitr_target=target)
    plan = plan_retention(BACKUPS, SEGMENTS, policy, NOW)
    assert oldest_kept(plan) == "b1"
    assert plan.expired_backups == ()
    assert names(plan.prunable) == {seg(1), seg(2)}


def test_a_pitr_target_before_every_backup_keeps_everything() -> None:
    policy = RetentionPolicy(keep_backups=2, min_age=timedelta(0), pitr_target=NOW - 20 * DAY)
    plan = plan_retention(BACKUPS, SEGMENTS, policy, NOW)
    assert (plan.prunable, plan.expired_backups) == ((), ())
    assert "BV_BACKUP__PITR_TARGET" in plan.reason


def test_start_positions_going_backwards_keep_everything() -> None:
    # A newer backup starting before an older one: a re-initialised cluster reusing names.
    backups = [backup("b1", 3, 9), backup("b2", 6, 6), backup("b3", 2, 3)]
    plan = plan_retention(backups, SEGMENTS, KEEP_TWO, NOW)
    assert plan.prunable == ()
    assert "do not grow with time" in plan.reason


def test_history_files_labels_and_strangers_follow_their_kind() -> None:
    extra = archive(
        "00000002.history",
        f"{seg(2)}.00000028.backup",
        f"{seg(6)}.00000060.backup",
        f"{seg(4)}.partial",
        "README",
    )
    plan = plan_retention(BACKUPS, SEGMENTS + extra, KEEP_TWO, NOW)
    assert {f"{seg(2)}.00000028.backup", f"{seg(4)}.partial"} <= names(plan.prunable)
    assert {"00000002.history", f"{seg(6)}.00000060.backup", "README"} <= names(plan.kept)


def test_segments_of_a_later_timeline_are_kept() -> None:
    later = archive(seg(4, timeline=2))
    plan = plan_retention(BACKUPS, SEGMENTS + later, KEEP_TWO, NOW)
    assert seg(4, timeline=2) in names(plan.kept)


def test_wal_position_parses_segment_names() -> None:
    position = wal_position("0000000200000001000000A3")
    assert position is not None
    assert (position.timeline, position.log, position.segment) == (2, 1, 0xA3)
    assert wal_position("00000002.history") is None
    assert wal_position("000000010000000000000003.partial") is not None
