"""PostgreSQL's server settings file, written by the stack on every start.

The stack writes ``bitvelocity.conf`` and includes it from ``postgresql.conf``, so the
settings (``BV_POSTGRES__*``, ``BV_BACKUP__*``) are the one place to change the server.
"""

from __future__ import annotations

from pathlib import Path

from backup.pgtools import give_to_server_user
from backup.wal import archive_settings
from config.settings import PostgresSettings

CONF_INCLUDE = "bitvelocity.conf"


def server_conf(pg: PostgresSettings, socket_dir: Path, wal_archive: Path | None) -> str:
    """The settings file; WAL archiving to ``wal_archive`` when given (applies at the
    server's next start: archive_mode needs a restart)."""
    archiving = archive_settings(wal_archive) if wal_archive is not None else []
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


def write_included_conf(data_dir: Path, conf: str) -> None:
    """Write ``conf`` as the included file and make ``postgresql.conf`` include it."""
    include = data_dir / CONF_INCLUDE
    include.write_text(conf, encoding="utf-8")
    give_to_server_user(include)
    main_conf = data_dir / "postgresql.conf"
    text = main_conf.read_text(encoding="utf-8")
    directive = f"include_if_exists = '{CONF_INCLUDE}'"
    if directive not in text:
        main_conf.write_text(text + f"\n{directive}\n", encoding="utf-8")
