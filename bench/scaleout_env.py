"""Isolated scale-out pipelines (own topics, keyspace, database, groups) and the stores' startup.

Shared by the integration and fault tests and the scale-out benchmark. ``scaleout_stores_up``
starts Cassandra and FerretDB through the stack once (Cassandra takes about a minute) and
stops them afterwards only if it started them; when something already answers on the
configured ports (a developer's own stack), that is used as is.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from config.settings import Settings
from sinks.cassandra.schema import drop_keyspace
from sinks.cassandra.session import cql_session
from stack import process
from stack.manager import SCALEOUT_NAMES, Stack


@dataclass(frozen=True)
class ScaleoutEnv:
    settings: Settings
    prefix: str

    def worker_env(self) -> dict[str, str]:
        """Environment of a ``bitvelocity scaleout worker`` process on this environment."""
        s = self.settings
        return {
            "BV_TOPICS__CHAT_MESSAGES": s.topics.chat_messages,
            "BV_TOPICS__DEVICE_TELEMETRY": s.topics.device_telemetry,
            "BV_TOPICS__SOCIAL_POSTS": s.topics.social_posts,
            "BV_CASSANDRA__KEYSPACE": s.cassandra.keyspace,
            "BV_MONGO__DATABASE": s.mongo.database,
            "BV_KAFKA__CONSUMER_GROUP": s.kafka.consumer_group,
            "BV_SINK__BATCH_MAX_RECORDS": str(s.sink.batch_max_records),
            "BV_SINK__RETRY_MAX_BACKOFF_S": str(s.sink.retry_max_backoff_s),
        }

    @property
    def topics(self) -> list[str]:
        t = self.settings.topics
        return [t.chat_messages, t.device_telemetry, t.social_posts]


def _answering(settings: Settings) -> bool:
    return process.port_in_use(
        settings.cassandra.host, settings.cassandra.port
    ) and process.port_in_use(settings.mongo.host, settings.mongo.port)


#: A developer whose Cassandra/FerretDB run from another state folder than the shared stack
#: names it here, so fault tests can restart them (CI leaves it unset).
STATE_DIR_OVERRIDE = "BV_SCALEOUT_TEST_STATE_DIR"


def scaleout_stack(settings: Settings) -> Stack:
    """The stack that owns (or will own) the scale-out services."""
    override = os.environ.get(STATE_DIR_OVERRIDE)
    if override:
        stack_settings = settings.stack.model_copy(update={"state_dir": Path(override)})
        settings = settings.model_copy(update={"stack": stack_settings})
    return Stack(settings, with_scaleout=True)


@contextlib.contextmanager
def scaleout_stores_up(settings: Settings) -> Iterator[Stack]:
    """Cassandra and FerretDB ready for the block (started here only when not running)."""
    stack = scaleout_stack(settings)
    started: list[str] = []
    if not _answering(settings):
        running = {row.name for row in stack.status(SCALEOUT_NAMES) if row.pid is not None}
        stack.up(lambda _line: None, SCALEOUT_NAMES)
        started = [name for name in SCALEOUT_NAMES if name not in running]
    try:
        yield stack
    finally:
        if started:
            stack.down(lambda _line: None, started)


@contextlib.contextmanager
def scaleout_environment(base: Settings, *, batch_max_records: int = 500) -> Iterator[ScaleoutEnv]:
    """Unique topics, keyspace, database and consumer groups; all dropped afterwards."""
    prefix = f"bvso{secrets.token_hex(3)}"
    settings = base.model_copy(
        update={
            "topics": base.topics.model_copy(
                update={
                    "chat_messages": f"{prefix}.chat-messages",
                    "device_telemetry": f"{prefix}.device-telemetry",
                    "social_posts": f"{prefix}.social-posts",
                }
            ),
            "cassandra": base.cassandra.model_copy(update={"keyspace": prefix}),
            "mongo": base.mongo.model_copy(update={"database": prefix}),
            "kafka": base.kafka.model_copy(update={"consumer_group": prefix}),
            "sink": base.sink.model_copy(
                update={"batch_max_records": batch_max_records, "retry_max_backoff_s": 2.0}
            ),
        }
    )
    env = ScaleoutEnv(settings, prefix)
    try:
        yield env
    finally:
        _drop(env)


def _drop(env: ScaleoutEnv) -> None:
    settings = env.settings
    with contextlib.suppress(Exception), cql_session(settings.cassandra, keyspace=None) as session:
        drop_keyspace(session, settings.cassandra.keyspace)
    with contextlib.suppress(Exception):
        import pymongo

        from sinks.mongo.posts import client_options

        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            settings.mongo.uri(), **client_options(settings.mongo)
        )
        try:
            client.drop_database(settings.mongo.database)
        finally:
            client.close()
    with contextlib.suppress(Exception):
        admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
        dlqs = [settings.topics.dlq_topic(t) for t in env.topics]
        for future in admin.delete_topics(env.topics + dlqs).values():
            with contextlib.suppress(Exception):
                future.result(timeout=15)
