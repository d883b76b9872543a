"""NATS from Debian (``stack up --with-scaleout``), loopback only, token required.

It carries cache evictions to services outside Python (subject ``cache.invalidate``, see
``cache/nats_invalidation.py``). Core NATS only: no JetStream, nothing on disk but the
generated configuration (mode 0600, it holds the token) and the log.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

from config.errors import DependencyMissingError
from stack import process
from stack.base import Endpoint, Progress, Service

_INSTALL_HINT = "apt-get install nats-server, or run ./bv once (it installs what the stack needs)"


def nats_server() -> Path:
    """The ``nats-server`` binary of Debian's package."""
    found = shutil.which("nats-server")
    if not found:
        raise DependencyMissingError(f"nats-server is not installed; {_INSTALL_HINT}")
    return Path(found)


def read_info(host: str, port: int, timeout_s: float = 2.0) -> dict[str, object]:
    """The ``INFO {...}`` line a NATS server sends to every new connection, parsed."""
    with socket.create_connection((host, port), timeout=timeout_s) as connection:
        data = b""
        while b"\r\n" not in data and len(data) < 64 * 1024:
            chunk = connection.recv(4096)
            if not chunk:
                break
            data += chunk
    line = data.split(b"\r\n", 1)[0]
    if not line.startswith(b"INFO "):
        raise ConnectionError(f"not a NATS server on {host}:{port}: {line[:40]!r}")
    info: dict[str, object] = json.loads(line[5:])
    return info


class NatsService(Service):
    name = "nats"
    description = "NATS (cache invalidation fan-out)"

    @property
    def conf_path(self) -> Path:
        return self.home / "nats.conf"

    def endpoints(self) -> list[Endpoint]:
        n = self.settings.nats
        return [Endpoint("nats", n.host, n.port, "BV_NATS__PORT")]

    def render_config(self) -> str:
        """The server configuration (JSON strings are valid NATS config strings)."""
        n = self.settings.nats
        lines = [
            "# Written by `bitvelocity stack up` on every start; edit the settings, not this file.",
            f"listen: {json.dumps(f'{n.host}:{n.port}')}",
            f"server_name: {json.dumps('bitvelocity')}",
            "max_payload: 1MB",
        ]
        token = n.token.get_secret_value()
        if token:
            lines.append(f"authorization {{ token: {json.dumps(token)} }}")
        return "\n".join(lines) + "\n"

    def prepare(self, progress: Progress) -> None:
        nats_server()
        self.home.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.render_config(), encoding="utf-8")
        self.conf_path.chmod(0o600)

    def start(self) -> None:
        process.spawn(
            [str(nats_server()), "-c", str(self.conf_path)],
            log_path=self.log_path,
            pid_path=self.pid_path,
        )

    def probe(self) -> str | None:
        n = self.settings.nats
        info = read_info(n.host, n.port)
        auth = "token" if info.get("auth_required") else "no auth"
        return f"NATS {info.get('version', '?')}, {auth}"
