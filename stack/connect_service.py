"""Kafka Connect in distributed mode with the Debezium PostgreSQL connector on its plugin path.

Internal topics use replication factor 1. Connector secrets never travel in connector
configs: the worker enables Kafka's ``FileConfigProvider`` restricted to
``<state>/connect/secrets``, so a config says ``${file:<path>:key}`` and Connect's REST
API and config topic never hold the password itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from stack import process
from stack.base import Endpoint, Progress, Service, url_host_port
from stack.jvm import kafka_java_command, resolve_named, write_properties
from stack.versions import DEBEZIUM_VERSION

POSTGRES_CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
APICURIO_AVRO_CONVERTER = "io.apicurio.registry.utils.converter.AvroConverter"
FILE_CONFIG_PROVIDER = "org.apache.kafka.common.config.provider.FileConfigProvider"


def postgres_secrets_file(state_dir: Path) -> Path:
    """The properties file connector configs reference as ``${file:<this>:admin_password}``."""
    return state_dir / "connect" / "secrets" / "postgres.properties"


class ConnectService(Service):
    name = "connect"
    description = f"Kafka Connect + Debezium {DEBEZIUM_VERSION}"

    def endpoints(self) -> list[Endpoint]:
        host, port = url_host_port(self.settings.connect.url)
        return [Endpoint("rest", host, port, "BV_CONNECT__URL")]

    @property
    def secrets_dir(self) -> str:
        return str(postgres_secrets_file(self.paths.state).parent)

    def _write_secrets(self) -> None:
        """Database credentials for connectors, readable only by us (see module docstring)."""
        path = postgres_secrets_file(self.paths.state)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pg = self.settings.postgres
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"admin_password={pg.admin_password.get_secret_value()}\n")
            handle.write(f"debezium_password={pg.debezium_password.get_secret_value()}\n")

    def prepare(self, progress: Progress) -> None:
        resolve_named(self.paths, "kafka", progress)
        resolve_named(self.paths, "debezium", progress)
        resolve_named(self.paths, "apicurio-converter", progress)
        host, port = url_host_port(self.settings.connect.url)
        self._write_secrets()
        write_properties(
            self.home / "worker.properties",
            {
                "bootstrap.servers": self.settings.kafka.bootstrap_servers,
                "group.id": "bitvelocity-connect",
                "config.storage.topic": "_bv-connect-configs",
                "offset.storage.topic": "_bv-connect-offsets",
                "status.storage.topic": "_bv-connect-status",
                "config.storage.replication.factor": "1",
                "offset.storage.replication.factor": "1",
                "status.storage.replication.factor": "1",
                "offset.storage.partitions": "1",
                "status.storage.partitions": "1",
                "key.converter": "org.apache.kafka.connect.json.JsonConverter",
                "value.converter": "org.apache.kafka.connect.json.JsonConverter",
                "key.converter.schemas.enable": "false",
                "value.converter.schemas.enable": "false",
                "offset.flush.interval.ms": "1000",
                "listeners": f"http://{host}:{port}",
                "rest.advertised.host.name": host,
                "rest.advertised.port": str(port),
                "plugin.path": str(self.paths.jvm / "connect-plugins"),
                "config.providers": "file",
                "config.providers.file.class": FILE_CONFIG_PROVIDER,
                "config.providers.file.param.allowed.paths": self.secrets_dir,
            },
        )

    def start(self) -> None:
        process.spawn(
            kafka_java_command(
                self.settings.stack,
                self.paths,
                self.settings.stack.connect_heap_mb,
                "org.apache.kafka.connect.cli.ConnectDistributed",
                str(self.home / "worker.properties"),
            ),
            log_path=self.log_path,
            pid_path=self.pid_path,
        )

    def probe(self) -> str | None:
        response = httpx.get(f"{self.settings.connect.url}/connector-plugins", timeout=3)
        if response.status_code != 200:
            return None
        classes = {plugin.get("class") for plugin in response.json()}
        if POSTGRES_CONNECTOR_CLASS not in classes:
            return None
        return f"Debezium PostgresConnector {DEBEZIUM_VERSION} loaded"

    def after_ready(self, progress: Progress) -> None:
        # Also on a warm `up`: the password may have been rotated since Connect started.
        self._write_secrets()
