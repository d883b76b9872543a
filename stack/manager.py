"""Bring the whole local stack up, report it, and take down only what it started.

``up`` is idempotent: services already running (by our pid files) are left alone, the
others are prepared (downloads, initdb, storage format), started in dependency order and
waited for until their readiness probes answer. A service that dies while starting is
reported with the tail of its log.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from config.errors import ConfigurationError, ServiceStartError
from config.settings import Settings, load_settings
from observability.disk import folder_bytes
from stack import ports, process
from stack.base import Endpoint, Progress, Service, StackContext
from stack.cassandra_service import CassandraService
from stack.connect_service import ConnectService
from stack.credentials import ensure_credentials
from stack.ferretdb_service import FerretDBService
from stack.kafka_service import KafkaService
from stack.nats_service import NatsService
from stack.postgres_service import PostgresService
from stack.prometheus_service import PrometheusService
from stack.rabbitmq_service import RabbitMQService
from stack.redis_service import RedisService
from stack.registry_service import RegistryService

#: Start order; each tuple is a wave started together, waited for before the next.
_WAVES: tuple[tuple[type[Service], ...], ...] = (
    (PostgresService, RedisService, KafkaService, RegistryService),
    (ConnectService,),
)
SERVICE_NAMES = tuple(cls.name for wave in _WAVES for cls in wave)
#: Optional services, only part of the stack with ``--with-monitoring``; started last.
_MONITORING_WAVE: tuple[type[Service], ...] = (PrometheusService,)
MONITORING_NAMES = tuple(cls.name for cls in _MONITORING_WAVE)
#: Optional scale-out services, only part of the stack with ``--with-scaleout``; they need
#: nothing else, so they start (and boot: RabbitMQ and Cassandra take a while) alongside the
#: first wave.
_SCALEOUT_WAVE: tuple[type[Service], ...] = (
    NatsService,
    RabbitMQService,
    CassandraService,
    FerretDBService,
)
SCALEOUT_NAMES = tuple(cls.name for cls in _SCALEOUT_WAVE)


@dataclass(frozen=True)
class ServiceStatus:
    """One row of ``stack status``."""

    name: str
    description: str
    state: str
    pid: int | None
    addresses: str
    detail: str
    #: Bytes of the service's state folder (``status(sizes=True)`` only).
    state_bytes: int | None = None

    @property
    def ready(self) -> bool:
        return self.state == "ready"


class Stack:
    """The set of local services described by one ``Settings``."""

    def __init__(
        self, settings: Settings, *, with_monitoring: bool = False, with_scaleout: bool = False
    ) -> None:
        self.settings = settings
        context = StackContext(settings)
        waves = (*_WAVES, _MONITORING_WAVE) if with_monitoring else _WAVES
        if with_scaleout:  # independent of the rest: they start with the first wave
            waves = ((*waves[0], *_SCALEOUT_WAVE), *waves[1:])
        self.waves = [[cls(context) for cls in wave] for wave in waves]
        self.names = tuple(service.name for service in self.services)

    @classmethod
    def from_environment(
        cls,
        *,
        create_credentials: bool = False,
        with_monitoring: bool = False,
        with_scaleout: bool = False,
    ) -> Stack:
        """Settings from the environment (generating local credentials first if asked)."""
        if create_credentials:
            ensure_credentials(load_settings().stack.state_dir)
        return cls(load_settings(), with_monitoring=with_monitoring, with_scaleout=with_scaleout)

    @property
    def services(self) -> list[Service]:
        return [service for wave in self.waves for service in wave]

    def select(self, names: Iterable[str] | None) -> list[Service]:
        """The named services (all when ``names`` is empty), in start order."""
        wanted = set(names or self.names)
        unknown = wanted - set(self.names)
        if unknown:
            hint = (
                " (add --with-monitoring for prometheus)" if unknown & set(MONITORING_NAMES) else ""
            )
            if unknown & set(SCALEOUT_NAMES):
                hint += f" (add --with-scaleout for {', '.join(SCALEOUT_NAMES)})"
            raise ConfigurationError(
                f"unknown service(s) {', '.join(sorted(unknown))}; "
                f"choose from {', '.join(self.names)}{hint}"
            )
        return [s for s in self.services if s.name in wanted]

    # -- up --------------------------------------------------------------------------------
    def up(self, progress: Progress, names: Iterable[str] | None = None) -> list[ServiceStatus]:
        """Start what is not running, wait for readiness, return the status table."""
        selected = {s.name for s in self.select(names)}
        if "connect" in selected:
            selected.add("kafka")  # Connect stores its state in Kafka
        for warning in self.ephemeral_port_warnings():
            progress(warning)
        for wave in self.waves:
            members = [s for s in wave if s.name in selected]
            to_start = [s for s in members if s.pid() is None]
            for service in to_start:
                service.ensure_ports_free()
                service.prepare(progress)
            for service in to_start:
                progress(f"{service.name}: starting")
                service.start()
            self._wait_ready(members, progress)
            for service in members:
                service.after_ready(progress)
        return self.status(selected)

    def _wait_ready(self, services: list[Service], progress: Progress) -> None:
        deadline = time.monotonic() + self.settings.stack.ready_timeout_s
        pending = {s.name: s for s in services}
        while pending:
            for name, service in list(pending.items()):
                if service.probe_quietly() is not None:
                    progress(f"{name}: ready")
                    del pending[name]
                elif service.pid() is None:
                    ended = process.how_it_ended(service.pid_path, service.marker)
                    raise ServiceStartError(
                        f"{name} exited while starting ({ended}); last lines of "
                        f"{service.log_path}:\n" + process.tail(service.log_path, 15)
                    )
            if not pending:
                return
            if time.monotonic() > deadline:
                names = ", ".join(sorted(pending))
                raise ServiceStartError(
                    f"not ready after {self.settings.stack.ready_timeout_s:.0f} s: {names}; "
                    f"see `bitvelocity stack logs {sorted(pending)[0]}` "
                    "(raise BV_STACK__READY_TIMEOUT_S on a slow machine)"
                )
            progress(f"waiting for {', '.join(sorted(pending))}")
            time.sleep(0.5)

    def ephemeral_port_warnings(self) -> list[str]:
        """A line per configured port inside this machine's ephemeral range, naming its setting.

        Such a port can be taken by any outgoing connection while its service is down, and
        the next start then fails (docs/decisions/0018-ports-outside-the-ephemeral-range.md).
        """
        low, high = ports.ephemeral_range()
        endpoints = [e for s in self.services for e in s.endpoints()]
        endpoints += application_endpoints(self.settings)
        return [
            f"warning: {e.setting}={e.port} ({e.label}) lies in this machine's ephemeral port "
            f"range {low}-{high}: an outgoing connection may take it while the service is down; "
            f"choose a port below {low}"
            for e in endpoints
            if ports.in_range(e.port, (low, high))
        ]

    # -- down --------------------------------------------------------------------------------
    def down(self, progress: Progress, names: Iterable[str] | None = None) -> list[str]:
        """Stop our running services, reverse start order; returns the names stopped."""
        stopped: list[str] = []
        for service in reversed(self.select(names)):
            if service.pid() is None:
                continue
            progress(f"{service.name}: stopping")
            if service.stop():
                stopped.append(service.name)
        return stopped

    # -- status ------------------------------------------------------------------------------
    def status(
        self, names: Iterable[str] | None = None, *, sizes: bool = False
    ) -> list[ServiceStatus]:
        """One row per service; ``sizes`` also measures each state folder (walks the tree)."""
        rows = []
        folders = self.state_folders() if sizes else {}
        archive = (self.wal_archive_dir(),)
        for service in self.select(names):
            pid = service.pid()
            detail = service.probe_quietly() if pid is not None else None
            if pid is None:
                state = "stopped"
            elif detail is None:
                state = "starting"
            else:
                state = "ready"
            addresses = ", ".join(f"{e.label} {e.host}:{e.port}" for e in service.endpoints())
            rows.append(
                ServiceStatus(
                    service.name,
                    service.description,
                    state,
                    pid,
                    addresses,
                    detail or "",
                    folder_bytes(folders[service.name], exclude=archive) if sizes else None,
                )
            )
        return rows

    def state_folders(self) -> dict[str, Path]:
        """Each service's state folder (PostgreSQL's may live outside the state folder)."""
        return {service.name: service.home for service in self.services}

    def wal_archive_dir(self) -> Path:
        """The WAL archive, measured on its own (not within PostgreSQL's state)."""
        return PostgresService(StackContext(self.settings)).wal_archive_dir

    def service(self, name: str) -> Service:
        return self.select([name])[0]


def application_endpoints(settings: Settings) -> list[Endpoint]:
    """Ports our own processes listen on besides the stack's services."""
    web, backup = settings.web, settings.backup
    return [
        Endpoint("web views", web.host, web.port, "BV_WEB__PORT"),
        Endpoint("worker /metrics", web.host, web.metrics_port, "BV_WEB__METRICS_PORT"),
        Endpoint(
            "dr replica", settings.postgres.host, backup.replica_port, "BV_BACKUP__REPLICA_PORT"
        ),
    ]
