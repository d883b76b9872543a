"""Run the PostgreSQL client and server programs, passwords in a private passfile only.

Passwords never appear on a command line: each child gets ``PGPASSFILE`` pointing at a 0600
file in a private temp folder that is removed when the child ends. Server programs
(``pg_ctl``, ``initdb``, ``postgres``) refuse root, so as root they run as the ``postgres``
OS user, like the stack does (stack/postgres_service.py).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from backup.errors import BackupError
from config.settings import PostgresSettings
from stack.tools import postgres_bindir

SERVER_OS_USER = "postgres"


def binary(name: str) -> str:
    """Absolute path of one PostgreSQL 15 program (pg_dump, pg_restore, pg_basebackup...)."""
    return str(postgres_bindir() / name)


def running_as_root() -> bool:
    return os.geteuid() == 0


def as_server_user(command: list[str]) -> list[str]:
    """``command`` run as the ``postgres`` OS user when we are root."""
    if running_as_root():
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        return [runuser, "-u", SERVER_OS_USER, "--", *command]
    return command


def give_to_server_user(path: Path, *, recursive: bool = False) -> None:
    """Make ``path`` (and below) owned by the ``postgres`` OS user when we are root."""
    if not running_as_root():
        return
    entry = pwd.getpwnam(SERVER_OS_USER)
    targets = [path, *path.rglob("*")] if recursive else [path]
    for target in targets:
        os.chown(target, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _escape(field: str) -> str:
    return field.replace("\\", "\\\\").replace(":", "\\:")


@contextlib.contextmanager
def client_env(
    pg: PostgresSettings, *, user: str | None = None, password: str | None = None
) -> Iterator[dict[str, str]]:
    """Environment for a libpq client of ``pg``: PGHOST/PGPORT/PGUSER and a private passfile."""
    login = user or pg.admin_user
    secret = pg.admin_password.get_secret_value() if password is None else password
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGHOST=pg.host, PGPORT=str(pg.port), PGUSER=login, PGCONNECT_TIMEOUT="10")
    with tempfile.TemporaryDirectory(prefix="bv-pgpass-") as folder:
        if secret:
            passfile = Path(folder) / "pgpass"
            passfile.touch(mode=0o600)
            passfile.write_text(
                f"{_escape(pg.host)}:{pg.port}:*:{_escape(login)}:{_escape(secret)}\n",
                encoding="utf-8",
            )
            env["PGPASSFILE"] = str(passfile)
        yield env


def run_tool(
    command: list[str], *, what: str, env: dict[str, str] | None = None, timeout_s: float = 600
) -> str:
    """Run one program; its stderr becomes a one-line BackupError naming ``what``."""
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BackupError(f"{what} took longer than {timeout_s:.0f} s; check the server") from exc
    if done.returncode != 0:
        detail = " ".join((done.stderr or done.stdout).split())[:400]
        raise BackupError(f"{what} failed (exit {done.returncode}): {detail}")
    return done.stdout
