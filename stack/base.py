"""What every local service of the stack is: prepared, started, probed, stopped by pid.

The stack keeps all its state under one folder (``BV_STACK__STATE_DIR``, default
``.state/`` in the checkout): downloaded jars, data, logs, pid files and the generated
credentials. Everything binds to loopback unless the settings say otherwise.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from config.errors import ConfigurationError
from config.settings import Settings
from stack import ports, process

Progress = Callable[[str], None]

_quiet = logging.getLogger("bitvelocity.stack.probe")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


@dataclass(frozen=True)
class Endpoint:
    """One address a service listens on, and the setting that moves it."""

    label: str
    host: str
    port: int
    setting: str


@dataclass(frozen=True)
class StackPaths:
    """The folders under the state directory."""

    state: Path

    @property
    def jvm(self) -> Path:
        return self.state / "jvm"

    @property
    def run(self) -> Path:
        return self.state / "run"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    def service(self, name: str) -> Path:
        return self.state / name


@dataclass(frozen=True)
class StackContext:
    """Settings plus paths: everything a service needs to know."""

    settings: Settings

    @property
    def paths(self) -> StackPaths:
        return StackPaths(self.settings.stack.state_dir)


class Service(ABC):
    """A local server the stack manages."""

    name: str = ""
    description: str = ""

    def __init__(self, context: StackContext) -> None:
        self.context = context
        self.settings = context.settings
        self.paths = context.paths

    # -- where things are -------------------------------------------------------------
    @property
    def home(self) -> Path:
        """This service's own folder under the state directory."""
        return self.paths.service(self.name)

    @property
    def log_path(self) -> Path:
        return self.paths.logs / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        return self.paths.run / f"{self.name}.pid"

    @property
    def marker(self) -> str:
        """A string every command line of ours contains, so we never signal a stranger."""
        return str(self.paths.state)

    @abstractmethod
    def endpoints(self) -> list[Endpoint]:
        """The addresses this service listens on."""

    # -- lifecycle --------------------------------------------------------------------
    def prepare(self, progress: Progress) -> None:  # noqa: B027 - optional hook
        """Install, resolve or initialise what ``start`` needs. Idempotent."""

    @abstractmethod
    def start(self) -> None:
        """Launch the process; return without waiting for readiness."""

    @abstractmethod
    def probe(self) -> str | None:
        """A short detail line when the service answers as ready, else ``None``."""

    def after_ready(self, progress: Progress) -> None:  # noqa: B027 - optional hook
        """One-time setup that needs the running service (databases, users). Idempotent."""

    def pid(self) -> int | None:
        """The pid of our running process, or ``None``."""
        return process.owned_pid(self.pid_path, self.marker)

    def stop(self) -> bool:
        """Stop our process if it runs; True when something was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        process.terminate(pid)
        self.pid_path.unlink(missing_ok=True)
        return True

    def ensure_ports_free(self) -> None:
        """Refuse to start when a socket holds one of our ports, naming it and the setting."""
        for endpoint in self.endpoints():
            holders = ports.port_holders(endpoint.host, endpoint.port)
            if holders:
                raise ConfigurationError(port_taken_message(self.name, endpoint, holders[0]))
            if process.port_in_use(endpoint.host, endpoint.port):  # no /proc: probe instead
                raise ConfigurationError(
                    f"{self.name}: port {endpoint.port} on {endpoint.host} is already in use by "
                    f"another program; stop it or choose another port with {endpoint.setting}"
                )

    def probe_quietly(self) -> str | None:
        """``probe`` with every expected connection failure mapped to 'not ready'."""
        try:
            return self.probe()
        except Exception as exc:  # noqa: BLE001 - any failure of a probe means "not ready yet"
            _quiet.debug("%s probe failed: %s", self.name, exc)
            return None


def host_port(address: str) -> tuple[str, int]:
    """Split ``host:port`` (the first of a comma-separated list)."""
    first = address.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigurationError(f"address {address!r} is not of the form host:port")
    return host, int(port)


def url_host_port(url: str) -> tuple[str, int]:
    """Host and port of an ``http://host:port[/path]`` URL."""
    without_scheme = url.split("://", 1)[-1]
    return host_port(without_scheme.split("/", 1)[0])


def port_taken_message(service: str, endpoint: Endpoint, holder: ports.PortHolder) -> str:
    """One line: which port, who holds it, and the setting that moves it."""
    low, high = ports.ephemeral_range()
    hint = (
        f"; {endpoint.port} lies in this machine's ephemeral range {low}-{high}, so any "
        f"outgoing connection may take it again: choose a port below {low}"
        if ports.in_range(endpoint.port, (low, high))
        else ""
    )
    return (
        f"{service}: port {endpoint.port} on {endpoint.host} is held by {holder.describe()}; "
        f"stop it or choose another port with {endpoint.setting}{hint}"
    )
