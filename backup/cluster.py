"""A local PostgreSQL cluster we start and stop ourselves: a restored one or a replica.

The stack's own cluster belongs to stack/postgres_service.py; this is for clusters the
recovery commands create from backups. Settings go into ``bitvelocity.conf``, included by
``postgresql.conf`` exactly as the stack does, so a restored copy of the stack's data folder
gets its own port and WAL settings by rewriting one file.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from backup.errors import BackupError
from backup.pgtools import as_server_user, binary, give_to_server_user, run_tool
from config.settings import LOOPBACK, PostgresSettings
from sinks.postgres.connection import DatabaseUnavailableError, connect

CONF_INCLUDE = "bitvelocity.conf"


@dataclass(frozen=True)
class LocalCluster:
    """A data folder plus where it listens; the folder's parent holds its log and socket."""

    data_dir: Path
    port: int
    host: str = LOOPBACK

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir.parent

    def base_conf(self) -> list[str]:
        return [
            f"listen_addresses = '{self.host}'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.socket_dir}'",
        ]

    def write_conf(self, lines: list[str]) -> None:
        """Replace our include file with ``lines`` (after listen/port/socket)."""
        include = self.data_dir / CONF_INCLUDE
        include.write_text("\n".join([*self.base_conf(), *lines, ""]), encoding="utf-8")
        give_to_server_user(include)
        main = self.data_dir / "postgresql.conf"
        text = main.read_text(encoding="utf-8")
        directive = f"include_if_exists = '{CONF_INCLUDE}'"
        if directive not in text:
            main.write_text(f"{text}\n{directive}\n", encoding="utf-8")

    def initdb(self) -> None:
        """A new empty cluster, trust on loopback (for drills; real clusters come from backups)."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        give_to_server_user(self.data_dir.parent)
        command = [binary("initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust"]
        run_tool(as_server_user([*command, "-E", "UTF8", "--no-locale"]), what="initdb")

    def start(self, *, timeout_s: float = 60) -> None:
        command = [binary("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path)]
        command += ["-w", "-t", str(int(timeout_s)), "start"]
        run_tool(as_server_user(command), what=f"pg_ctl start of {self.data_dir}")

    def stop(self, *, mode: str = "fast") -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        command = [binary("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"]
        run_tool(as_server_user(command), what=f"pg_ctl stop of {self.data_dir}")

    def promote(self) -> None:
        command = [binary("pg_ctl"), "-D", str(self.data_dir), "-w", "promote"]
        run_tool(as_server_user(command), what=f"pg_ctl promote of {self.data_dir}")

    def settings(self, pg: PostgresSettings) -> PostgresSettings:
        """``pg`` pointed at this cluster."""
        return pg.model_copy(update={"host": self.host, "port": self.port})


async def wait_out_of_recovery(pg: PostgresSettings, *, timeout_s: float) -> float:
    """Poll until the server accepts connections and left recovery; returns seconds waited."""
    started = time.monotonic()
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        try:
            connection = await connect(pg, "postgres")
        except DatabaseUnavailableError:
            await asyncio.sleep(0.2)
            continue
        try:
            if not await connection.fetchval("SELECT pg_is_in_recovery()"):
                return time.monotonic() - started
        finally:
            await connection.close()
        await asyncio.sleep(0.2)
    raise BackupError(
        f"PostgreSQL on port {pg.port} is still recovering after {timeout_s:.0f} s; "
        "read its log next to the data folder"
    )
