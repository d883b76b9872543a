"""Logical backups: ``pg_dump --format=custom`` of the OLTP and warehouse parts of a database.

The OLTP source and the warehouse live in one database (schemas ``public`` and
``bronze/silver/gold/ops/ref/archive``), so a backup holds two dumps: ``oltp`` (everything but
the warehouse schemas, extensions and pg_partman's configuration included) and ``warehouse``
(the warehouse schemas only, ``ops.consumer_offsets`` with them). Restoring the warehouse part
alone rewinds rows and offsets together, so the sink resumes from the restored offsets and
replays what Kafka still holds (DESIGN.md section 5): bronze ends exact (I1).

Each backup carries a manifest with the SHA-256 of every file; ``verify`` checks the digests
and that pg_restore can read each dump's table of contents.

Restores run as the non-superuser admin role (docs/decisions/0016). A database it creates
already has the superuser-only extensions (pg_partman and its schema, pg_stat_statements:
the stack's bootstrap puts them in template1), and the admin may not re-create or comment
them, so the restore skips those table-of-contents entries when the target holds them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from backup.errors import BackupCorruptError, BackupError
from backup.pgtools import binary, client_env, run_tool
from backup.targets import LocalFolderTarget, backup_target
from config.settings import PostgresSettings, Settings
from sinks.postgres.connection import connect, ensure_database

WAREHOUSE_SCHEMAS = ("bronze", "silver", "gold", "ops", "ref", "archive")
Part = Literal["oltp", "warehouse"]
PARTS: tuple[Part, ...] = ("oltp", "warehouse")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class DumpFile:
    part: str
    file: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Manifest:
    name: str
    created_at: str
    database: str
    server: str
    dumps: list[DumpFile] = field(default_factory=list)
    #: ``schema.table`` -> rows when the dump started (a consistency reference for restores).
    row_counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        try:
            data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            dumps = [DumpFile(**d) for d in data.pop("dumps")]
            return cls(dumps=dumps, **data)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise BackupCorruptError(
                f"backup {folder.name}: unreadable manifest ({exc}); delete it and take a new one"
            ) from exc

    def write(self, folder: Path) -> None:
        (folder / MANIFEST).write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")


def backup_name(now: datetime) -> str:
    """Names sort by creation time: ``20261126T203000.123456Z``."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def dump_arguments(
    part: Part, database: str, output: Path, compression: int, schemas: tuple[str, ...]
) -> list[str]:
    """The pg_dump command line of one part (no password: it travels in PGPASSFILE).

    ``schemas``: the warehouse schemas the database has (pg_dump fails on a missing one).
    """
    command = [binary("pg_dump"), "--format=custom", f"--compress={compression}"]
    command += [f"--file={output}", f"--dbname={database}"]
    flag = "--schema" if part == "warehouse" else "--exclude-schema"
    command += [f"{flag}={schema}" for schema in schemas]
    return command


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


async def _inspect(
    pg: PostgresSettings, database: str
) -> tuple[str, tuple[str, ...], dict[str, int]]:
    """Server version, the warehouse schemas present, and row counts of every table."""
    connection = await connect(pg, database)
    try:
        server = str(await connection.fetchval("SHOW server_version"))
        present = await connection.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[]) ORDER BY 1",
            list(WAREHOUSE_SCHEMAS),
        )
        tables = await connection.fetch(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "AND n.nspname = ANY($1::text[]) ORDER BY 1",
            ["public", *WAREHOUSE_SCHEMAS],
        )
        # Identifiers come from the catalog, quoted by quote_ident.
        counts = {
            row["name"]: int(await connection.fetchval(f"SELECT count(*) FROM {row['name']}"))  # noqa: S608
            for row in tables
        }
        return server, tuple(r["nspname"] for r in present), counts
    finally:
        await connection.close()


def create_backup(settings: Settings, *, now: datetime | None = None) -> Manifest:
    """Dump both parts of the configured database into the target, then apply retention."""
    pg = settings.postgres
    target = backup_target(settings)
    name = backup_name(now or datetime.now(UTC))
    staging = target.staging(name)
    server, schemas, counts = asyncio.run(_inspect(pg, pg.database))
    dumps: list[DumpFile] = []
    with client_env(pg) as env:
        for part in PARTS:
            if part == "warehouse" and not schemas:
                continue  # no warehouse in this database: `bitvelocity migrate` makes one
            output = staging / f"{pg.database}.{part}.dump"
            compression = settings.backup.compression
            command = dump_arguments(part, pg.database, output, compression, schemas)
            run_tool(command, what=f"pg_dump of {part} ({pg.database})", env=env)
            output.chmod(0o600)
            dumps.append(DumpFile(part, output.name, _sha256(output), output.stat().st_size))
    manifest = Manifest(
        name=name,
        created_at=datetime.now(UTC).isoformat(),
        database=pg.database,
        server=server,
        dumps=dumps,
        row_counts=counts,
    )
    manifest.write(staging)
    target.put(name, staging)
    apply_retention(target, settings.backup.retention)
    return manifest


def apply_retention(target: LocalFolderTarget, keep: int) -> list[str]:
    """Delete the oldest backups beyond ``keep``; returns the deleted names."""
    names = target.names()
    expired = names[: max(0, len(names) - keep)]
    for name in expired:
        target.delete(name)
    return expired


def list_backups(settings: Settings) -> list[Manifest]:
    target = backup_target(settings)
    return [Manifest.read(target.fetch(name)) for name in target.names()]


def latest_name(settings: Settings) -> str:
    names = backup_target(settings).names()
    if not names:
        raise BackupError("no backup exists yet; take one with `bitvelocity backup create`")
    return names[-1]


def verify_backup(settings: Settings, name: str) -> Manifest:
    """Check every dump's digest and that pg_restore can read its table of contents."""
    folder = backup_target(settings).fetch(name)
    manifest = Manifest.read(folder)
    for dump in manifest.dumps:
        path = folder / dump.file
        if not path.is_file() or _sha256(path) != dump.sha256:
            raise BackupCorruptError(
                f"backup {name}: {dump.file} is missing or its SHA-256 differs from the "
                "manifest; restore from another backup"
            )
        run_tool([binary("pg_restore"), "--list", str(path)], what=f"pg_restore --list {path}")
    return manifest


@dataclass(frozen=True)
class TargetCatalog:
    """What a restore target holds already and must not be created again."""

    schemas: frozenset[str]
    extensions: frozenset[str]


def skip_existing(toc: str, target: TargetCatalog) -> str:
    """``pg_restore --list`` output without the extensions and schemas ``target`` holds.

    Entries look like ``3; 2615 16385 SCHEMA - partman owner``, ``2; 3079 16386 EXTENSION -
    pg_partman`` and ``4; 0 0 COMMENT - EXTENSION pg_partman``; the kept list goes back to
    pg_restore as ``--use-list``, which restores exactly those entries, in that order.
    """
    kept = []
    for line in toc.splitlines():
        words = line.split(";", 1)[-1].split()
        kind = words[2:5]
        if (
            (kind[:2] == ["SCHEMA", "-"] and len(words) > 4 and words[4] in target.schemas)
            or (kind[:2] == ["EXTENSION", "-"] and len(words) > 4 and words[4] in target.extensions)
            or (
                kind == ["COMMENT", "-", "EXTENSION"]
                and len(words) > 5
                and words[5] in target.extensions
            )
        ):
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"


async def _prepare_target(
    pg: PostgresSettings, database: str, parts: tuple[Part, ...], schemas: list[str]
) -> TargetCatalog:
    await ensure_database(pg, database)
    connection = await connect(pg, database)
    try:
        if "oltp" in parts:
            tables = await connection.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            )
            if tables:
                raise BackupError(
                    f"database {database} already holds OLTP tables; restore the oltp part "
                    "into a new database (--database) or restore --part warehouse only"
                )
        if "warehouse" in parts:
            async with connection.transaction():
                for schema in schemas:
                    quoted = await connection.fetchval("SELECT quote_ident($1)", schema)
                    await connection.execute(f"DROP SCHEMA IF EXISTS {quoted} CASCADE")
        present = await connection.fetch("SELECT nspname FROM pg_namespace")
        extensions = await connection.fetch("SELECT extname FROM pg_extension")
        return TargetCatalog(
            frozenset(r["nspname"] for r in present), frozenset(r["extname"] for r in extensions)
        )
    finally:
        await connection.close()


def restore_backup(
    settings: Settings,
    name: str,
    *,
    database: str | None = None,
    parts: tuple[Part, ...] = PARTS,
    privileges: bool = True,
) -> Manifest:
    """Restore ``parts`` of backup ``name`` into ``database`` on the configured cluster.

    The warehouse part replaces the warehouse schemas of the target (stop the sink first);
    the oltp part goes only into a database without OLTP tables. The backup is verified first.
    """
    pg = settings.postgres
    target_db = database or pg.database
    manifest = verify_backup(settings, name)
    folder = backup_target(settings).fetch(name)
    files = {d.part: folder / d.file for d in manifest.dumps}
    missing = [part for part in parts if part not in files]
    if missing:
        raise BackupError(f"backup {name} has no {', '.join(missing)} dump; choose another --part")
    target = asyncio.run(_prepare_target(pg, target_db, parts, list(WAREHOUSE_SCHEMAS)))
    with client_env(pg) as env, tempfile.TemporaryDirectory(prefix="bv-restore-") as lists:
        for part in PARTS:
            if part not in parts:
                continue
            toc = run_tool(
                [binary("pg_restore"), "--list", str(files[part])],
                what=f"pg_restore --list {files[part]}",
            )
            use_list = Path(lists) / f"{part}.list"
            use_list.write_text(skip_existing(toc, target), encoding="utf-8")
            command = [binary("pg_restore"), "--exit-on-error", "--single-transaction"]
            command += ["--no-owner", f"--dbname={target_db}", f"--use-list={use_list}"]
            if not privileges:
                command.append("--no-privileges")
            run_tool(
                [*command, str(files[part])],
                what=f"pg_restore of {part} into {target_db}",
                env=env,
            )
    return manifest
