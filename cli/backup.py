"""``bitvelocity backup`` and ``bitvelocity dr``: backups, restores, and the streaming replica."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from backup.cluster import LocalCluster
from backup.errors import BackupError
from backup.logical import (
    PARTS,
    Part,
    create_backup,
    latest_name,
    list_backups,
    restore_backup,
    verify_backup,
)
from backup.replica import promote, replica_status, replica_up
from backup.retention_edge import retention_gaps
from backup.wal import restore_point_in_time, take_base_backup
from backup.wal_prune import base_backup_root, describe, prune_wal_archive, retention_policy
from cli.console import err, out
from config.settings import Settings, load_settings
from stack.manager import Stack
from stack.postgres_service import PostgresService

backup_app = typer.Typer(
    help="Logical backups (pg_dump), base backups and point-in-time restores.",
    no_args_is_help=True,
)
dr_app = typer.Typer(
    help="Disaster recovery: a streaming replica you can promote.", no_args_is_help=True
)
replica_app = typer.Typer(
    help="The streaming replica of the stack's PostgreSQL.", no_args_is_help=True
)
dr_app.add_typer(replica_app, name="replica")

Name = Annotated[str | None, typer.Argument(help="Backup name (default: the newest).")]


def _postgres(settings: Settings) -> PostgresService:
    service = Stack(settings).service("postgres")
    if not isinstance(service, PostgresService):
        raise BackupError("the stack has no PostgreSQL service; check stack/manager.py")
    return service


def create() -> None:
    """Dump the OLTP and warehouse parts (custom format, compressed); keep the newest N."""
    settings = load_settings()
    manifest = create_backup(settings)
    size = sum(d.bytes for d in manifest.dumps)
    out.print(f"backup {manifest.name}: {size / 1e6:.1f} MB in {len(manifest.dumps)} dumps")


def list_() -> None:
    """The backups in the configured target, oldest first."""
    table = Table("name", "database", "dumps", "MB", "rows")
    for manifest in list_backups(load_settings()):
        table.add_row(
            manifest.name,
            manifest.database,
            ", ".join(d.part for d in manifest.dumps),
            f"{sum(d.bytes for d in manifest.dumps) / 1e6:.1f}",
            str(sum(manifest.row_counts.values())),
        )
    out.print(table)


def verify(name: Name = None) -> None:
    """Check every dump's SHA-256 and that pg_restore can read it."""
    settings = load_settings()
    manifest = verify_backup(settings, name or latest_name(settings))
    out.print(f"backup {manifest.name}: {len(manifest.dumps)} dumps verified")


def base() -> None:
    """Take a physical base backup of the stack's cluster (the start point of PITR)."""
    settings = load_settings()
    taken = take_base_backup(settings.postgres, base_backup_root(settings))
    out.print(f"base backup {taken.folder} (verified, WAL from {taken.start_segment})")
    if settings.backup.prune_after_base and settings.backup.wal_archiving:
        _prune(settings, dry_run=False)


def _prune(settings: Settings, *, dry_run: bool) -> None:
    plan = prune_wal_archive(
        base_backup_root(settings),
        _postgres(settings).wal_archive_dir,
        retention_policy(settings),
        dry_run=dry_run,
    )
    for line in describe(plan, dry_run=dry_run):
        out.print(f"WAL retention: {line}")


def prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be removed.")
    ] = False,
) -> None:
    """Delete base backups and archived WAL no kept base backup or PITR target needs."""
    _prune(load_settings(), dry_run=dry_run)


def restore(
    name: Name = None,
    part: Annotated[
        str, typer.Option(help="oltp, warehouse or all (logical restore).")
    ] = "warehouse",
    database: Annotated[str | None, typer.Option(help="Target database.")] = None,
    no_privileges: Annotated[
        bool, typer.Option("--no-privileges", help="Skip GRANTs (roles absent on the target).")
    ] = False,
    to: Annotated[
        datetime | None,
        typer.Option(
            "--to",
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"],
            help="Point-in-time restore into a NEW cluster up to this time (with time zone).",
        ),
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="New data folder (with --to).")] = None,
    port: Annotated[int | None, typer.Option(help="Port of the new cluster (with --to).")] = None,
) -> None:
    """Restore a logical backup (stop the sink first), or PITR into a new cluster (--to)."""
    settings = load_settings()
    if to is not None:
        if data_dir is None or port is None:
            raise BackupError("--to needs --data-dir (a new folder) and --port (a free port)")
        cluster = LocalCluster(data_dir.resolve(), port)
        started = time.monotonic()
        wal_dir = _postgres(settings).wal_archive_dir
        restore_point_in_time(settings.postgres, base_backup_root(settings), wal_dir, cluster, to)
        out.print(
            f"restored to {to.isoformat()} on port {port} in {time.monotonic() - started:.1f} s; "
            f"point the pipeline at it with BV_POSTGRES__PORT={port}"
        )
        return
    choices: dict[str, tuple[Part, ...]] = {"all": PARTS, "oltp": ("oltp",)}
    choices["warehouse"] = ("warehouse",)
    if part not in choices:
        raise BackupError(f"unknown part {part}; use oltp, warehouse or all")
    chosen = choices[part]
    manifest = restore_backup(
        settings,
        name or latest_name(settings),
        database=database,
        parts=chosen,
        privileges=not no_privileges,
    )
    out.print(f"restored {', '.join(chosen)} of {manifest.name}")
    if "warehouse" in chosen and database is None:
        for gap in retention_gaps(settings):
            err.print(
                f"[bold yellow]warning:[/] {gap.topic}[{gap.partition}] resumes at {gap.resume_at} "
                f"but Kafka starts at {gap.log_start}: {gap.lost} records are gone; re-snapshot "
                "the connector (README: Backup and recovery)"
            )


backup_app.command("create")(create)
backup_app.command("list")(list_)
backup_app.command("verify")(verify)
backup_app.command("base")(base)
backup_app.command("restore")(restore)
backup_app.command("prune")(prune)


def _replica(settings: Settings) -> LocalCluster:
    folder = settings.backup.replica_dir or _postgres(settings).home.parent / "replica"
    return LocalCluster(folder / "data", settings.backup.replica_port)


def up() -> None:
    """Clone the stack's cluster into a streaming replica and start it."""
    settings = load_settings()
    backup = settings.backup
    replica = _replica(settings)
    replica_up(
        settings.postgres,
        backup.replication_user,
        backup.replication_password.get_secret_value(),
        replica,
    )
    out.print(f"replica streaming on port {replica.port} ({replica.data_dir})")


def status() -> None:
    """Whether the replica streams, and its lag behind the primary."""
    settings = load_settings()
    replica = _replica(settings)
    state = asyncio.run(replica_status(settings.postgres, replica.settings(settings.postgres)))
    role = "standby" if state.in_recovery else "primary (promoted)"
    lag = "n/a" if state.lag_bytes is None else f"{state.lag_bytes} bytes"
    out.print(
        f"replica on port {replica.port}: {role}, streaming={state.streaming}, lag {lag}, "
        f"replay lag {state.replay_lag or 'n/a'}"
    )


def promote_() -> None:
    """Make the replica the primary; then set BV_POSTGRES__PORT to its port."""
    settings = load_settings()
    replica = _replica(settings)
    asyncio.run(promote(replica.settings(settings.postgres)))
    out.print(f"promoted; point the pipeline at it: BV_POSTGRES__PORT={replica.port}")


replica_app.command("up")(up)
replica_app.command("status")(status)
replica_app.command("promote")(promote_)
