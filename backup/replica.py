"""A streaming replica of the PostgreSQL cluster: create, report lag, promote.

The replica is a second local cluster made by ``pg_basebackup`` as a dedicated replication
role with the least privilege streaming needs (``LOGIN REPLICATION``, nothing else). Its
password lives only in a 0600 passfile next to the replica, owned by the server user, and is
referenced by ``primary_conninfo``. After ``promote`` the replica is a primary; the pipeline
moves to it by configuration alone (``BV_POSTGRES__PORT`` = the replica's port).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from backup.cluster import LocalCluster
from backup.errors import ReplicaError
from backup.pgtools import binary, client_env, give_to_server_user, run_tool
from config.settings import PostgresSettings
from sinks.postgres.connection import connect

APPLICATION_NAME = "bitvelocity_replica"
#: Settings a hot standby must hold at least as high as its primary, or it refuses to start.
_AT_LEAST_PRIMARY = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)

_SET_ROLE = """
CREATE OR REPLACE FUNCTION pg_temp.bv_replicator(role_name text, secret text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
        EXECUTE format('CREATE ROLE %I', role_name);
    END IF;
    EXECUTE format(
        'ALTER ROLE %I WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE '
        'NOBYPASSRLS PASSWORD %L', role_name, secret);
END $$;
"""


@dataclass(frozen=True)
class ReplicaStatus:
    streaming: bool
    in_recovery: bool
    #: Bytes of WAL the primary wrote that the replica has not replayed (None: not connected).
    lag_bytes: int | None
    replay_lag: timedelta | None


async def _prepare_primary(pg: PostgresSettings, user: str, password: str) -> dict[str, str]:
    """Ensure the replication role, return the primary's limits the standby must match.

    On PostgreSQL 15 only a superuser may create a REPLICATION role or set its password, and
    the settings hold none (docs/decisions/0016): on the stack, ``stack up``'s bootstrap made
    the role from BV_BACKUP__* already. A superuser login (a drill's own cluster) makes it here.
    """
    connection = await connect(pg, "postgres")
    try:
        superuser, ready = await connection.fetchrow(
            "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), "
            "(SELECT rolreplication AND rolcanlogin FROM pg_roles WHERE rolname = $1)",
            user,
        ) or (False, False)
        if superuser:
            await connection.execute(_SET_ROLE)
            await connection.execute("SELECT pg_temp.bv_replicator($1, $2)", user, password)
        elif not ready:
            raise ReplicaError(
                f"role {user} is missing or may not log in and replicate on port {pg.port}, and "
                f"{pg.admin_user} may not create it (PostgreSQL 15: superuser only); run "
                "`bitvelocity stack up` with BV_BACKUP__REPLICATION_USER/_PASSWORD set, whose "
                "bootstrap creates it"
            )
        return {name: str(await connection.fetchval(f"SHOW {name}")) for name in _AT_LEAST_PRIMARY}
    finally:
        await connection.close()


def replica_up(pg: PostgresSettings, user: str, password: str, replica: LocalCluster) -> None:
    """Create the replication role, clone the primary into ``replica`` and start streaming."""
    if not password:
        raise ReplicaError(
            "no replication password: set BV_BACKUP__REPLICATION_PASSWORD (never on a command line)"
        )
    if replica.data_dir.exists():
        raise ReplicaError(
            f"{replica.data_dir} exists already; `bitvelocity dr replica status` inspects it"
        )
    limits = asyncio.run(_prepare_primary(pg, user, password))
    replica.data_dir.parent.mkdir(parents=True, exist_ok=True)
    with client_env(pg, user=user, password=password) as env:
        command = [binary("pg_basebackup"), "-D", str(replica.data_dir), "-X", "stream"]
        command += ["-c", "fast", "--no-password", f"--username={user}"]
        run_tool(command, what="pg_basebackup of the replica", env=env)
    passfile = replica.data_dir.parent / "replication.pgpass"
    passfile.touch(mode=0o600)
    passfile.write_text(f"*:{pg.port}:*:{user}:{password}\n", encoding="utf-8")
    (replica.data_dir / "standby.signal").touch()
    (replica.data_dir / "postmaster.pid").unlink(missing_ok=True)
    replica.data_dir.chmod(0o700)
    give_to_server_user(replica.data_dir.parent, recursive=True)
    conninfo = (
        f"host={pg.host} port={pg.port} user={user} passfile={passfile} "
        f"application_name={APPLICATION_NAME}"
    )
    replica.write_conf(
        [
            f"primary_conninfo = '{conninfo}'",
            "hot_standby = on",
            "archive_mode = off",
            *(f"{name} = {value}" for name, value in limits.items()),
        ]
    )
    replica.start(timeout_s=120)


async def replica_status(primary: PostgresSettings, replica: PostgresSettings) -> ReplicaStatus:
    """Lag as the primary sees it, and whether the replica still recovers (is a standby)."""
    lag_bytes: int | None = None
    replay_lag: timedelta | None = None
    streaming = False
    connection = await connect(primary, "postgres")
    try:
        row = await connection.fetchrow(
            "SELECT state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag, "
            "replay_lag FROM pg_stat_replication WHERE application_name = $1",
            APPLICATION_NAME,
        )
        if row is not None:
            streaming = row["state"] == "streaming"
            lag_bytes = row["lag"]
            replay_lag = row["replay_lag"]
    finally:
        await connection.close()
    standby = await connect(replica, "postgres")
    try:
        in_recovery = bool(await standby.fetchval("SELECT pg_is_in_recovery()"))
    finally:
        await standby.close()
    return ReplicaStatus(streaming, in_recovery, lag_bytes, replay_lag)


async def promote(replica: PostgresSettings, *, timeout_s: int = 60) -> None:
    """Make the replica a primary (``pg_promote``, waiting for the end of recovery)."""
    connection = await connect(replica, "postgres")
    try:
        if not await connection.fetchval("SELECT pg_is_in_recovery()"):
            raise ReplicaError(f"the server on port {replica.port} is already a primary")
        if not await connection.fetchval("SELECT pg_promote(true, $1)", timeout_s):
            raise ReplicaError(
                f"the replica on port {replica.port} did not finish promotion in {timeout_s} s; "
                "read its log"
            )
    finally:
        await connection.close()
