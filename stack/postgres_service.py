"""PostgreSQL 15 from Debian as a private cluster with logical replication for Debezium.

``initdb`` and ``postgres`` refuse to run as root, so as root every server command runs as
the ``postgres`` OS user, and the cluster lives where that user can reach it: under the
state folder when every parent folder is traversable, else under ``/var/tmp``.

No superuser is in the settings (docs/decisions/0016-no-superuser-in-settings.md). ``initdb``
names its superuser after the OS user that runs the server and gives it no password: it logs
in only over the cluster's Unix socket (peer authentication), only from this module, to run
``postgres_bootstrap.sql`` on every ``stack up``. That script creates the application's
non-superuser admin role (``BV_POSTGRES__ADMIN_USER``), the REPLICATION roles and the
superuser-only extensions (in template1). Everything else logs in over loopback TCP with
scram-sha-256 and a generated password.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import stat
from pathlib import Path

from backup.pgtools import SERVER_OS_USER, as_server_user, give_to_server_user, running_as_root
from config.errors import ServiceStartError
from observability.slow_queries import ensure_extension
from sinks.postgres.connection import connect, ensure_database
from stack.base import Endpoint, Progress, Service
from stack.postgres_conf import server_conf, write_included_conf
from stack.tools import postgres_bindir, run_checked

BOOTSTRAP_SQL = Path(__file__).resolve().parent / "postgres_bootstrap.sql"
#: The settings the bootstrap script reads from its environment (never from a command line).
BOOTSTRAP_ENV = (
    "BV_POSTGRES__ADMIN_USER",
    "BV_POSTGRES__ADMIN_PASSWORD",
    "BV_POSTGRES__DEBEZIUM_USER",
    "BV_POSTGRES__DEBEZIUM_PASSWORD",
    "BV_POSTGRES__WORKER_USER",
    "BV_POSTGRES__WORKER_PASSWORD",
    "BV_BACKUP__REPLICATION_USER",
    "BV_BACKUP__REPLICATION_PASSWORD",
)


class PostgresService(Service):
    name = "postgres"
    description = "PostgreSQL 15 (wal_level=logical)"

    # -- where the cluster lives ---------------------------------------------------------
    @property
    def home(self) -> Path:
        preferred = self.paths.service(self.name)
        if not running_as_root() or _traversable_by(preferred, SERVER_OS_USER):
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
        give_to_server_user(self.home)
        if not (self.data_dir / "PG_VERSION").exists():
            progress("postgres: initialising a new cluster (initdb)")
            self._initdb(bindir)
        self._write_conf()

    def start(self) -> None:
        bindir = postgres_bindir()
        run_checked(
            as_server_user(
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
        # Over the socket as the bootstrap superuser: the admin role may not exist yet.
        version = self.psql_as_superuser(
            "SHOW server_version", database="postgres", timeout_s=10
        ).strip()
        return f"PostgreSQL {version}, wal_level=logical"

    def after_ready(self, progress: Progress) -> None:
        self._refuse_superuser_owned_database()
        self._bootstrap(progress)
        asyncio.run(self._ensure_database(progress))
        asyncio.run(self._ensure_statement_stats(progress))

    def stop(self) -> bool:
        if self.pid() is None:
            return False
        run_checked(
            as_server_user(
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
        run_checked(
            as_server_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.superuser,
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-locale",
                ]
            ),
            what="initdb",
        )

    # -- the superuser's only work: bootstrap over the socket -----------------------------
    @property
    def superuser(self) -> str:
        """The cluster's superuser: named after the OS user running the server (peer auth)."""
        if running_as_root():
            return SERVER_OS_USER
        return pwd.getpwuid(os.geteuid()).pw_name

    @property
    def socket_dir(self) -> Path:
        return self.home / "socket"

    def psql_as_superuser(
        self,
        sql: str,
        *,
        database: str,
        env: dict[str, str] | None = None,
        timeout_s: float = 60,
    ) -> str:
        """Run ``sql`` (psql input, backslash commands allowed) as the superuser over the socket."""
        pg = self.settings.postgres
        command = [str(postgres_bindir() / "psql"), "-X", "-q", "-A", "-t"]
        command += ["-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir), "-p", str(pg.port)]
        command += ["-U", self.superuser, "-d", database, "-f", "-"]
        child_env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BV_"))}
        child_env.update(env or {})
        return run_checked(
            as_server_user(command),
            what=f"psql as the bootstrap superuser on {database}",
            env=child_env,
            timeout_s=timeout_s,
            stdin=sql,
        )

    def _bootstrap(self, progress: Progress) -> None:
        """Create or update the roles and template1's extensions (idempotent, every start)."""
        pg, backup = self.settings.postgres, self.settings.backup
        secrets = {
            "BV_POSTGRES__ADMIN_PASSWORD": pg.admin_password,
            "BV_POSTGRES__DEBEZIUM_PASSWORD": pg.debezium_password,
            "BV_POSTGRES__WORKER_PASSWORD": pg.worker_password,
        }
        missing = [key for key, value in secrets.items() if not value.get_secret_value()]
        if missing:
            raise ServiceStartError(
                f"postgres: no password set for {', '.join(missing)}; "
                "`bitvelocity stack up` generates them in the state folder"
            )
        env = {key: value.get_secret_value() for key, value in secrets.items()}
        env.update(
            BV_POSTGRES__ADMIN_USER=pg.admin_user,
            BV_POSTGRES__DEBEZIUM_USER=pg.debezium_user,
            BV_POSTGRES__WORKER_USER=pg.worker_user,
            BV_BACKUP__REPLICATION_USER=backup.replication_user,
            BV_BACKUP__REPLICATION_PASSWORD=backup.replication_password.get_secret_value(),
        )
        self.psql_as_superuser(
            BOOTSTRAP_SQL.read_text(encoding="utf-8"), database="postgres", env=env
        )
        progress(f"postgres: roles and extensions bootstrapped (app admin: {pg.admin_user})")

    def _refuse_superuser_owned_database(self) -> None:
        """A cluster from before 0016 has the app's database owned by the superuser: say so."""
        owned = self.psql_as_superuser(
            "SELECT d.datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
            "WHERE r.rolsuper AND NOT d.datistemplate AND d.datname <> 'postgres'",
            database="postgres",
        ).split()
        database = self.settings.postgres.database
        if database in owned:
            raise ServiceStartError(
                f"postgres: database {database} in {self.data_dir} is owned by a superuser: the "
                "cluster was created by an earlier `stack up`, whose admin login was the "
                "superuser. Take a backup if you need its data (`bitvelocity backup create` "
                "with BV_POSTGRES__ADMIN_USER=postgres), then `bitvelocity stack down`, delete "
                f"{self.paths.state} (and {self.home} if it lies elsewhere) and `stack up` again"
            )

    def server_conf(self, socket_dir: Path) -> str:
        """The settings file included by postgresql.conf, from our settings."""
        archive = self.wal_archive_dir if self.settings.backup.wal_archiving else None
        return server_conf(self.settings.postgres, socket_dir, archive)

    def _write_conf(self) -> None:
        socket_dir = self.socket_dir
        socket_dir.mkdir(exist_ok=True)
        give_to_server_user(socket_dir)
        if self.settings.backup.wal_archiving:
            self.wal_archive_dir.mkdir(parents=True, exist_ok=True)
            give_to_server_user(self.wal_archive_dir)
        write_included_conf(self.data_dir, self.server_conf(socket_dir))

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
