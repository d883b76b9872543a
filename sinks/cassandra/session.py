"""One way to open a CQL session on the configured Cassandra, with bounded timeouts.

The driver's default load-balancing policy warns about a missing local datacenter on every
connect; our clusters are one datacenter, so the policy names it. A session is a context
manager: the cluster (its sockets and event-loop thread) is always shut down.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

from config.settings import CassandraSettings

LOCAL_DC = "datacenter1"


def open_cluster(settings: CassandraSettings, *, timeout_s: float | None = None) -> Cluster:
    """A ``Cluster`` for ``settings`` (not yet connected)."""
    timeout = timeout_s if timeout_s is not None else settings.request_timeout_s
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=LOCAL_DC)),
        request_timeout=timeout,
    )
    auth = None
    if settings.username:
        auth = PlainTextAuthProvider(settings.username, settings.password.get_secret_value())
    return Cluster(
        contact_points=[settings.host],
        port=settings.port,
        auth_provider=auth,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=timeout,
        control_connection_timeout=timeout,
        protocol_version=5,
    )


@contextmanager
def cql_session(
    settings: CassandraSettings, *, keyspace: str | None, timeout_s: float | None = None
) -> Iterator[Session]:
    """A connected session (in ``keyspace`` when given); the cluster is shut down after."""
    cluster = open_cluster(settings, timeout_s=timeout_s)
    try:
        yield cluster.connect(keyspace)
    finally:
        cluster.shutdown()
