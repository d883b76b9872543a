"""Apply numbered ``.sql`` migrations to PostgreSQL, each once, in order, atomically.

A migration file is ``NNNN_description.sql``. Each runs in its own transaction together
with the row that records it, so a crash leaves it either fully applied or not at all.
Concurrent runners serialise on an advisory lock. An applied migration whose file has
changed since is an error, not a silent skip: history must not be rewritten. The files
are written idempotently too (``IF NOT EXISTS``), so replaying one is harmless.

Numbers are handed out to parallel branches ahead of time, so a folder may skip one
(0005, then 0007 while 0006 is still on another branch). History stays linear anyway:
a migration numbered below one already applied is refused, never applied out of order.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from config.errors import PermanentError
from config.settings import Settings
from sinks.postgres.connection import connect, ensure_database

_FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x42_56_4D_49  # "BVMI": one advisory lock key for all runners

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS bv_migrations;
CREATE TABLE IF NOT EXISTS bv_migrations.applied (
    namespace   text        NOT NULL,
    version     integer     NOT NULL,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, version)
);
"""


class MigrationError(PermanentError):
    """A migration folder is malformed, or history disagrees with the files."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path) -> list[Migration]:
    """The migrations in ``directory``, ordered by version; duplicates are errors."""
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_PATTERN.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files are named NNNN_lowercase_words.sql")
        migrations.append(
            Migration(int(match.group(1)), match.group(2), path.read_text(encoding="utf-8"))
        )
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions) or 0 in versions:
        raise MigrationError(f"{directory}: versions must be unique and start at 1, got {versions}")
    return migrations


async def apply_migrations(
    connection: asyncpg.Connection,
    namespace: str,
    migrations: list[Migration],
    progress: Callable[[str], None] = lambda _: None,
    around: Mapping[int, tuple[str, str]] | None = None,
) -> list[Migration]:
    """Apply the migrations of ``namespace`` not applied yet; returns those applied now.

    ``around``: per version, SQL run before and after that migration in its own transaction
    (a privilege the migration needs for that transaction only; never part of the checksum).
    """
    around = around or {}
    await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await connection.execute(_BOOTSTRAP)
        rows = await connection.fetch(
            "SELECT version, checksum FROM bv_migrations.applied WHERE namespace = $1", namespace
        )
        applied = {row["version"]: row["checksum"] for row in rows}
        newest = max(applied, default=0)
        done: list[Migration] = []
        for migration in migrations:
            recorded = applied.get(migration.version)
            if recorded is not None:
                if recorded != migration.checksum:
                    raise MigrationError(
                        f"{namespace} migration {migration.version:04d}_{migration.name} was "
                        "changed after it was applied; add a new migration instead"
                    )
                continue
            if migration.version < newest:
                raise MigrationError(
                    f"{namespace} migration {migration.version:04d}_{migration.name} is older "
                    f"than {newest:04d}, applied already; renumber it after {newest:04d}"
                )
            progress(f"{namespace}: applying {migration.version:04d}_{migration.name}")
            before, after = around.get(migration.version, ("", ""))
            async with connection.transaction():
                if before:
                    await connection.execute(before)
                await connection.execute(migration.sql)
                if after:
                    await connection.execute(after)
                await connection.execute(
                    "INSERT INTO bv_migrations.applied (namespace, version, name, checksum) "
                    "VALUES ($1, $2, $3, $4)",
                    namespace,
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            done.append(migration)
        return done
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def migrate_namespace(
    settings: Settings,
    database: str | None,
    namespace: str,
    directory: Path,
    progress: Callable[[str], None] = lambda _: None,
    after: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    around: Mapping[int, tuple[str, str]] | None = None,
) -> list[Migration]:
    """Create ``database`` if missing, apply ``directory``'s pending migrations, run ``after``."""
    target = database or settings.postgres.database
    await ensure_database(settings.postgres, target)
    connection = await connect(settings.postgres, target)
    try:
        applied = await apply_migrations(
            connection, namespace, load_migrations(directory), progress, around
        )
        if after is not None:
            await after(connection)
        return applied
    finally:
        await connection.close()
