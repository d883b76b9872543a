"""PostgreSQL 15 from Debian as a private cluster with logical replication for Debezium.

``initdb`` and ``postgres`` refuse to run as root, so as root every server command runs as
the ``postgres`` OS user, and the cluster lives where that user can reach it: under the
state folder when every parent folder is traversable, else under ``/var/tmp``.
Authentication is scram-sha-256 on loopback with a generated superuser password.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import shutil
import stat
from pathlib import Path

from backup.wal import archive_settings
from config.errors import ServiceStartError
from observability.slow_queries import ensure_extension
from sinks.postgres.connection import connect, ensure_database
from stack.base import Endpoint, Progress, Service
from stack.tools import postgres_bindir, run_checked

_OS_USER = "postgres"
_CONF_INCLUDE = "bitvelocity.conf"


class PostgresService(Service):
    name = "postgres"
    description = "PostgreSQL 15 (wal_level=logical)"

    # -- where the cluster lives ---------------------------------------------------------
    @property
    def home(self) -> Path:
        preferred = self.paths.service(self.name)
        if not self._running_as_root() or _traversable_by(preferred, _OS_USER):
            return preferred
        digest = hashlib.sha256(str(self.paths.state).encode()).hexdigest()[:12]
        # A fixed, per-checkout folder (not a random temp file): the cluster must be found again.
        return Path("/var/tmp") / f"bitvelocity-{digest}" / self.name  # noqa: S108

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_path(self) -> Path:
        return self.home / "server.log"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "postmaster.pid"

    @property
    def wal_archive_dir(self) -> Path:
        """Where the server archives WAL for point-in-time recovery (``bitvelocity backup``)."""
        return self.settings.backup.wal_archive_dir or self.home / "wal-archive"

    @property
    def marker(self) -> str:
        return str(self.data_dir)

    def endpoints(self) -> list[Endpoint]:
        pg = self.settings.postgres
        return [Endpoint("sql", pg.host, pg.port, "BV_POSTGRES__PORT")]

    # -- lifecycle -----------------------------------------------------------------------
    def prepare(self, progress: Progress) -> None:
        bindir = postgres_bindir()
        self.home.mkdir(parents=True, exist_ok=True)
        self._chown(self.home)
        if not (self.data_dir / "PG_VERSION").exists():
            progress("postgres: initialising a new cluster (initdb)")
            self._initdb(bindir)
        self._write_conf()

    def start(self) -> None:
        bindir = postgres_bindir()
        run_checked(
            self._as_owner(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_path),
                    "-s",
                    "start",
                ]
            ),
            what="pg_ctl start",
            timeout_s=60,
        )

    def probe(self) -> str | None:
        version = asyncio.run(self._query("SHOW server_version", database="postgres"))
        return f"PostgreSQL {version}, wal_level=logical"

    def after_ready(self, progress: Progress) -> None:
        asyncio.run(self._ensure_database(progress))
        asyncio.run(self._ensure_statement_stats(progress))

    def stop(self) -> bool:
        if self.pid() is None:
            return False
        run_checked(
            self._as_owner(
                [
                    str(postgres_bindir() / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "60",
                    "-s",
                    "stop",
                ]
            ),
            what="pg_ctl stop",
        )
        return True

    # -- helpers -------------------------------------------------------------------------
    def _initdb(self, bindir: Path) -> None:
        password = self.settings.postgres.admin_password.get_secret_value()
        if not password:
            raise ServiceStartError(
                "postgres: no admin password set (BV_POSTGRES__ADMIN_PASSWORD); "
                "`bitvelocity stack up` generates one in the state folder"
            )
        pwfile = self.home / ".initdb-password"
        pwfile.write_text(password + "\n", encoding="utf-8")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        try:
            run_checked(
                self._as_owner(
                    [
                        str(bindir / "initdb"),
                        "-D",
                        str(self.data_dir),
                        "-U",
                        self.settings.postgres.admin_user,
                        f"--pwfile={pwfile}",
                        "--auth-local=peer",
                        "--auth-host=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--no-locale",
                    ]
                ),
                what="initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def server_conf(self, socket_dir: Path) -> str:
        """The settings file included by postgresql.conf, from our settings."""
        pg = self.settings.postgres
        # WAL archiving applies at the server's next start (archive_mode needs a restart).
        archiving = (
            archive_settings(self.wal_archive_dir) if self.settings.backup.wal_archiving else []
        )
        return "\n".join(
            [
                "# Written by `bitvelocity stack up` on every start; edit the settings instead.",
                f"listen_addresses = '{pg.host}'",
                f"port = {pg.port}",
                f"unix_socket_directories = '{socket_dir}'",
                "wal_level = logical",
                "max_wal_senders = 10",
                "max_replication_slots = 10",
                "max_connections = 200",
                "shared_buffers = 256MB",
                "password_encryption = 'scram-sha-256'",
                "log_min_messages = warning",
                # Slow-query report (`bitvelocity db slow-queries`); loaded at server start only.
                "shared_preload_libraries = 'pg_stat_statements'",
                "pg_stat_statements.track = top",
                *archiving,
                "",
            ]
        )

    def _write_conf(self) -> None:
        socket_dir = self.home / "socket"
        socket_dir.mkdir(exist_ok=True)
        self._chown(socket_dir)
        if self.settings.backup.wal_archiving:
            self.wal_archive_dir.mkdir(parents=True, exist_ok=True)
            self._chown(self.wal_archive_dir)
        conf = self.server_conf(socket_dir)
        include = self.data_dir / _CONF_INCLUDE
        include.write_text(conf, encoding="utf-8")
        self._chown(include)
        main_conf = self.data_dir / "postgresql.conf"
        text = main_conf.read_text(encoding="utf-8")
        directive = f"include_if_exists = '{_CONF_INCLUDE}'"
        if directive not in text:
            main_conf.write_text(text + f"\n{directive}\n", encoding="utf-8")

    async def _query(self, sql: str, *, database: str) -> str:
        connection = await connect(self.settings.postgres, database)
        try:
            return str(await connection.fetchval(sql))
        finally:
            await connection.close()

    async def _ensure_database(self, progress: Progress) -> None:
        if await ensure_database(self.settings.postgres, self.settings.postgres.database):
            progress(f"postgres: created database {self.settings.postgres.database}")

    async def _ensure_statement_stats(self, progress: Progress) -> None:
        """Create pg_stat_statements once the library is loaded (after a restart); no-op before."""
        connection = await connect(self.settings.postgres)
        try:
            if not await ensure_extension(connection):
                progress(
                    "postgres: pg_stat_statements is configured but not loaded yet; "
                    "it is after the next PostgreSQL restart"
                )
        finally:
            await connection.close()

    @staticmethod
    def _running_as_root() -> bool:
        return os.geteuid() == 0

    def _as_owner(self, command: list[str]) -> list[str]:
        if self._running_as_root():
            runuser = shutil.which("runuser") or "/usr/sbin/runuser"
            return [runuser, "-u", _OS_USER, "--", *command]
        return command

    def _chown(self, path: Path) -> None:
        if self._running_as_root():
            entry = pwd.getpwnam(_OS_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)


def _traversable_by(path: Path, user: str) -> bool:
    """True when ``user`` can reach ``path``: every existing parent grants it search (x)."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return True
    for parent in path.resolve().parents:
        try:
            info = parent.stat()
        except OSError:
            continue
        if info.st_uid == entry.pw_uid:
            continue
        if info.st_gid == entry.pw_gid and info.st_mode & stat.S_IXGRP:
            continue
        if not info.st_mode & stat.S_IXOTH:
            return False
    return True
