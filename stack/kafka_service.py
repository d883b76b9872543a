"""Apache Kafka in KRaft mode: one combined broker and controller on loopback.

Storage is formatted once, on first start, with a cluster id kept beside the data.
Internal topics use replication factor 1 and few partitions: this is a one-node stack
sized for a 2-core machine.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka.admin import AdminClient

from stack import process
from stack.base import Endpoint, Progress, Service, host_port
from stack.jvm import kafka_java_command, resolve_named, write_properties
from stack.tools import run_checked
from stack.versions import KAFKA_VERSION

_silent = logging.getLogger("bitvelocity.stack.kafka-probe")
_silent.addHandler(logging.NullHandler())
_silent.propagate = False


class KafkaService(Service):
    name = "kafka"
    description = f"Apache Kafka {KAFKA_VERSION} (KRaft)"

    @property
    def broker_address(self) -> tuple[str, int]:
        return host_port(self.settings.kafka.bootstrap_servers)

    def endpoints(self) -> list[Endpoint]:
        host, port = self.broker_address
        return [
            Endpoint("broker", host, port, "BV_KAFKA__BOOTSTRAP_SERVERS"),
            Endpoint(
                "controller", host, self.settings.kafka.controller_port, "BV_KAFKA__CONTROLLER_PORT"
            ),
        ]

    @property
    def server_properties(self) -> str:
        return str(self.home / "server.properties")

    def prepare(self, progress: Progress) -> None:
        resolve_named(self.paths, "kafka", progress)
        host, port = self.broker_address
        controller = self.settings.kafka.controller_port
        data = self.home / "data"
        write_properties(
            self.home / "server.properties",
            {
                "process.roles": "broker,controller",
                "node.id": "1",
                "controller.quorum.voters": f"1@{host}:{controller}",
                "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
                "advertised.listeners": f"PLAINTEXT://{host}:{port}",
                "controller.listener.names": "CONTROLLER",
                "inter.broker.listener.name": "PLAINTEXT",
                "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                "log.dirs": str(data),
                "num.partitions": "1",
                "default.replication.factor": "1",
                "offsets.topic.replication.factor": "1",
                "offsets.topic.num.partitions": "10",
                "transaction.state.log.replication.factor": "1",
                "transaction.state.log.min.isr": "1",
                "transaction.state.log.num.partitions": "5",
                "share.coordinator.state.topic.replication.factor": "1",
                "share.coordinator.state.topic.min.isr": "1",
                "group.initial.rebalance.delay.ms": "0",
                "auto.create.topics.enable": "true",
                "num.network.threads": "2",
                "num.io.threads": "2",
                "num.recovery.threads.per.data.dir": "1",
                "log.retention.hours": "168",
            },
        )
        if not (data / "meta.properties").exists():
            progress("kafka: formatting KRaft storage")
            cluster_id_file = self.home / "cluster.id"
            if not cluster_id_file.exists():
                cluster_id_file.write_text(kafka_cluster_id() + "\n", encoding="utf-8")
            cluster_id = cluster_id_file.read_text(encoding="utf-8").strip()
            run_checked(
                kafka_java_command(
                    self.settings.stack,
                    self.paths,
                    256,
                    "kafka.tools.StorageTool",
                    "format",
                    # One argument, so an id kept from before this check that starts with
                    # "-" is not read as an option.
                    f"--cluster-id={cluster_id}",
                    "-c",
                    self.server_properties,
                    "--ignore-formatted",
                ),
                what="kafka storage format",
            )

    def start(self) -> None:
        process.spawn(
            kafka_java_command(
                self.settings.stack,
                self.paths,
                self.settings.stack.kafka_heap_mb,
                "kafka.Kafka",
                self.server_properties,
            ),
            log_path=self.log_path,
            pid_path=self.pid_path,
        )

    def probe(self) -> str | None:
        host, port = self.broker_address
        if not process.port_in_use(host, port):
            return None
        config: dict[str, Any] = {
            "bootstrap.servers": self.settings.kafka.bootstrap_servers,
            "socket.timeout.ms": 2000,
            "logger": _silent,  # a down broker is expected while starting: no stderr noise
        }
        admin = AdminClient(config)
        metadata = admin.list_topics(timeout=3)
        return f"{len(metadata.brokers)} broker, {len(metadata.topics)} topics"


def kafka_cluster_id(random_bytes: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 chars).

    Never one that starts with ``-``: the storage tool's argument parser reads such an id as
    an option ("argument --cluster-id/-t: expected one argument"). One id in 64 did; a CI
    run met one. Kafka's own ``Uuid.randomUuid`` draws again in that case, and so does this.
    """
    while True:
        candidate = base64.urlsafe_b64encode(random_bytes()).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate
