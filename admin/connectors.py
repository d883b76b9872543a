"""Kafka Connect REST client and the Debezium PostgreSQL connector configuration we run.

Registration is idempotent (``PUT /connectors/<name>/config``). The database password is
never part of the config: it is a ``${file:...}`` reference resolved inside the worker.
Values are Avro through Apicurio's converter (Confluent framing, content ids, which the
registry's ccompat API serves as schema ids) or, in the JSON profile, schemaless JSON.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from config.errors import ConfigurationError, ServiceStartError, TransientError
from config.settings import Settings
from stack.connect_service import (
    APICURIO_AVRO_CONVERTER,
    POSTGRES_CONNECTOR_CLASS,
    postgres_secrets_file,
)


@dataclass(frozen=True)
class ConnectorSpec:
    """What to capture: connector and slot names, tables, topic prefix."""

    name: str
    database: str
    tables: Sequence[str]  # schema-qualified, e.g. "public.orders"
    topic_prefix: str
    slot: str
    publication: str
    converter: Literal["avro", "json"] = "avro"
    snapshot_mode: str = "initial"
    user: str | None = None  # default: the admin user
    password_key: str = "admin_password"  # noqa: S105 - a key in the secrets file, not a secret
    publication_autocreate: Literal["filtered", "disabled"] = "filtered"
    #: Run by Debezium every heartbeat interval (``heartbeat.action.query``): a write to a
    #: published table, so the slot's confirmed position moves while the captured tables
    #: are quiet (oltp migration 0005, decision 0024).
    heartbeat_query: str | None = None


#: The OLTP database's heartbeat write (oltp migration 0005).
OLTP_HEARTBEAT_QUERY = "UPDATE cdc.heartbeat SET beat_at = now() WHERE id = 1"


def oltp_connector_spec(
    settings: Settings,
    *,
    database: str | None = None,
    name: str | None = None,
    topic_prefix: str | None = None,
    slot: str | None = None,
) -> ConnectorSpec:
    """The production connector: OLTP tables, least-privilege ``debezium`` login, our publication.

    Overrides exist so tests can capture their own database under their own names.
    """
    connector = settings.connector
    return ConnectorSpec(
        name=name or connector.name,
        database=database or settings.postgres.database,
        tables=list(connector.tables),
        topic_prefix=topic_prefix or settings.topics.cdc_prefix,
        slot=slot or connector.slot,
        publication=connector.publication,
        converter=settings.connect.converter,
        user=settings.postgres.debezium_user,
        password_key="debezium_password",  # noqa: S106 - a key name, not a secret
        publication_autocreate="disabled",  # created by the OLTP migration, with partition roots
        heartbeat_query=OLTP_HEARTBEAT_QUERY,
    )


def converter_config(settings: Settings, converter: Literal["avro", "json"]) -> dict[str, str]:
    """Key and value converter settings for one profile."""
    if converter == "json":
        return {
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "false",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "false",
        }
    config: dict[str, str] = {}
    for side in ("key", "value"):
        prefix = f"{side}.converter"
        config.update(
            {
                prefix: APICURIO_AVRO_CONVERTER,
                f"{prefix}.apicurio.registry.url": settings.registry.apicurio_v2_url,
                f"{prefix}.apicurio.registry.auto-register": "true",
                f"{prefix}.apicurio.registry.find-latest": "true",
                # Confluent framing (magic byte + 4-byte id) with content ids: the ids the
                # registry's Confluent-compatible API serves, so any Confluent-style reader works.
                f"{prefix}.apicurio.registry.headers.enabled": "false",
                f"{prefix}.apicurio.registry.as-confluent": "true",
                f"{prefix}.apicurio.registry.use-id": "contentId",
            }
        )
    return config


def debezium_postgres_config(settings: Settings, spec: ConnectorSpec) -> dict[str, str]:
    """The full connector config for ``spec`` against the stack's PostgreSQL."""
    pg = settings.postgres
    secrets = postgres_secrets_file(settings.stack.state_dir)
    heartbeat = {"heartbeat.action.query": spec.heartbeat_query} if spec.heartbeat_query else {}
    return {
        "connector.class": POSTGRES_CONNECTOR_CLASS,
        "tasks.max": "1",
        "database.hostname": pg.host,
        "database.port": str(pg.port),
        "database.user": spec.user or pg.admin_user,
        "database.password": f"${{file:{secrets}:{spec.password_key}}}",
        "database.dbname": spec.database,
        "topic.prefix": spec.topic_prefix,
        "plugin.name": "pgoutput",
        "slot.name": spec.slot,
        "publication.name": spec.publication,
        "publication.autocreate.mode": spec.publication_autocreate,
        "table.include.list": ",".join(spec.tables),
        "snapshot.mode": spec.snapshot_mode,
        "decimal.handling.mode": "precise",
        "provide.transaction.metadata": "true",
        "heartbeat.interval.ms": "10000",
        **heartbeat,
        "tombstones.on.delete": "true",
        # Emit TRUNCATE (Debezium skips it by default): silver applies it (decision 0021).
        "skipped.operations": "none",
        "schema.name.adjustment.mode": "avro",
        "topic.creation.default.replication.factor": "1",
        "topic.creation.default.partitions": str(settings.topics.partitions),
        **converter_config(settings, spec.converter),
    }


def changed_settings(current: Mapping[str, str], wanted: Mapping[str, str]) -> list[str]:
    """The keys of ``wanted`` that ``current`` lacks or sets otherwise (keys only ``current``
    has, such as Connect's own ``name``, do not count); sorted."""
    return sorted(key for key, value in wanted.items() if current.get(key) != value)


def register_oltp_connector(
    settings: Settings, *, update: bool = False, progress: Callable[[str], None] | None = None
) -> str:
    """Register (or, with ``update``, reconfigure) the OLTP connector; returns what happened."""
    spec = oltp_connector_spec(settings)
    wanted = debezium_postgres_config(settings, spec)
    with ConnectClient(settings) as connect_client:
        current = connect_client.config(spec.name)
        if current is not None:
            changed = changed_settings(current, wanted)
            if changed and not update:
                raise ConfigurationError(
                    f"connector {spec.name} is already registered with a different "
                    f"configuration ({', '.join(changed)}); run `bitvelocity connector "
                    "register --update` to replace it"
                )
            if not changed:
                connect_client.wait_running(spec.name)
                return f"connector {spec.name} already registered with this configuration"
        if progress:
            progress(f"registering connector {spec.name} ({spec.converter} values)")
        connect_client.put(spec.name, wanted)
        connect_client.wait_running(spec.name)
    return f"connector {spec.name} {'updated' if current else 'registered'} and RUNNING"


class ConnectClient:
    """The parts of Kafka Connect's REST API we use. Use as a context manager."""

    def __init__(self, settings: Settings) -> None:
        self._url = settings.connect.url
        self._http = httpx.Client(base_url=self._url, timeout=10)

    def __enter__(self) -> ConnectClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def put(self, name: str, config: dict[str, str]) -> None:
        """Create or update connector ``name`` (idempotent)."""
        response = self._call("PUT", f"/connectors/{name}/config", json=config)
        if response.status_code >= 400:
            raise ServiceStartError(
                f"Kafka Connect refused connector {name}: HTTP {response.status_code} "
                f"{_error_text(response)}"
            )

    def config(self, name: str) -> dict[str, str] | None:
        """The connector's current config, or None when it does not exist."""
        response = self._call("GET", f"/connectors/{name}/config")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        result: dict[str, str] = response.json()
        return result

    def status(self, name: str) -> dict[str, Any] | None:
        """The connector's status document, or None when it does not exist."""
        response = self._call("GET", f"/connectors/{name}/status")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def delete(self, name: str) -> bool:
        """Delete connector ``name``; False when it did not exist."""
        response = self._call("DELETE", f"/connectors/{name}")
        return response.status_code != 404

    def wait_running(self, name: str, timeout_s: float = 90.0) -> dict[str, Any]:
        """Block until the connector and all its tasks run; a FAILED task raises at once."""
        deadline = time.monotonic() + timeout_s
        status: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            status = self.status(name)
            if status is not None:
                tasks = status.get("tasks", [])
                failed = [t for t in tasks if t.get("state") == "FAILED"]
                if failed or status["connector"]["state"] == "FAILED":
                    trace = (failed[0] if failed else status["connector"]).get("trace", "")
                    raise ServiceStartError(
                        f"connector {name} failed: {trace.splitlines()[0] if trace else status}"
                    )
                if (
                    status["connector"]["state"] == "RUNNING"
                    and tasks
                    and all(t.get("state") == "RUNNING" for t in tasks)
                ):
                    return status
            time.sleep(0.5)
        raise ServiceStartError(f"connector {name} not RUNNING after {timeout_s:.0f} s: {status}")

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise TransientError(
                f"Kafka Connect at {self._url} unreachable ({exc}); `bitvelocity stack status`"
            ) from exc


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", response.text))[:400]
    except ValueError:
        return response.text[:400]
