"""RabbitMQ from Debian (``stack up --with-scaleout``), run as our own process, loopback only.

Everything lives under ``<state>/rabbitmq``: its configuration, database (mnesia), Erlang
cookie (``HOME``) and enabled-plugins file (none: no management UI). The AMQP listener,
the Erlang distribution port and epmd all bind 127.0.0.1 on ports from the settings, so
it never meets Debian's own ``rabbitmq-server`` service (which ``./bv`` disables). The
only user is ``BV_RABBITMQ__USER`` with the generated ``BV_RABBITMQ__PASSWORD``; no
``guest``. RabbitMQ applies ``default_user``/``default_pass`` when its database is
created, i.e. on the first start.

Debian's launcher script does not ``exec`` the Erlang VM, so the VM is a child in the same
process group: ``stop`` signals the group and waits until every member is gone, then stops
the epmd that the VM started on our port.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from pathlib import Path

from config.errors import DependencyMissingError
from stack import process
from stack.base import Endpoint, Progress, Service

LAUNCHER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
EPMD = Path("/usr/bin/epmd")
_INSTALL_HINT = (
    "apt-get install rabbitmq-server, or run ./bv once (it installs what the stack needs)"
)
_AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


def rabbitmq_launcher() -> Path:
    if not LAUNCHER.is_file():
        raise DependencyMissingError(f"RabbitMQ is not installed ({LAUNCHER}); {_INSTALL_HINT}")
    return LAUNCHER


def server_version(connection_start: bytes) -> str | None:
    """The ``version`` server property of an AMQP 0-9-1 Connection.Start frame, if present."""
    marker = connection_start.find(b"\x07versionS")
    if marker < 0:
        return None
    start = marker + len(b"\x07versionS")
    (length,) = struct.unpack(">I", connection_start[start : start + 4])
    return connection_start[start + 4 : start + 4 + length].decode(errors="replace")


def _group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text(encoding="utf-8").rpartition(")")[2].split()
        except OSError:
            continue
        if fields and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


class RabbitMQService(Service):
    name = "rabbitmq"
    description = "RabbitMQ (quality alerts, DLQ notifications)"

    def endpoints(self) -> list[Endpoint]:
        r = self.settings.rabbitmq
        return [
            Endpoint("amqp", r.host, r.port, "BV_RABBITMQ__PORT"),
            Endpoint("erlang-dist", r.host, r.dist_port, "BV_RABBITMQ__DIST_PORT"),
            Endpoint("epmd", r.host, r.epmd_port, "BV_RABBITMQ__EPMD_PORT"),
        ]

    def ensure_ports_free(self) -> None:
        # A leftover epmd of our own earlier run is harmless (the VM registers with it again).
        self._stop_epmd()
        super().ensure_ports_free()

    def render_config(self) -> str:
        r = self.settings.rabbitmq
        lines = [
            "# Written by `bitvelocity stack up` on every start; edit the settings, not this file.",
            f"listeners.tcp.1 = {r.host}:{r.port}",
            f"default_user = {r.user}",
            f"default_pass = {r.password.get_secret_value()}",
            "default_vhost = /",
            "log.console = true",
            "log.console.level = warning",
            "log.file = false",
        ]
        return "\n".join(lines) + "\n"

    def environment(self) -> dict[str, str]:
        r = self.settings.rabbitmq
        address = "{" + ",".join(r.host.split(".")) + "}"
        return {
            **os.environ,
            "HOME": str(self.home),
            "RABBITMQ_HOME": "/usr/lib/rabbitmq",
            "RABBITMQ_NODENAME": "bitvelocity@localhost",
            "RABBITMQ_CONFIG_FILE": str(self.home / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.home / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.home / "log"),
            "RABBITMQ_PID_FILE": str(self.home / "rabbitmq.pid"),
            "RABBITMQ_DIST_PORT": str(r.dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"-kernel inet_dist_use_interface {address}",
            "ERL_EPMD_PORT": str(r.epmd_port),
            "ERL_EPMD_ADDRESS": r.host,
        }

    def prepare(self, progress: Progress) -> None:
        rabbitmq_launcher()
        for folder in ("mnesia", "log"):
            (self.home / folder).mkdir(parents=True, exist_ok=True)
        conf = self.home / "rabbitmq.conf"
        conf.write_text(self.render_config(), encoding="utf-8")
        conf.chmod(0o600)
        (self.home / "enabled_plugins").write_text("[].\n", encoding="utf-8")

    def start(self) -> None:
        # The shell keeps our state folder in its command line (the pid-file check needs it);
        # "; exit" stops it from exec-ing the launcher in its place.
        process.spawn(
            ["/bin/sh", "-c", '"$0"; exit $?', str(rabbitmq_launcher()), str(self.home)],
            log_path=self.log_path,
            pid_path=self.pid_path,
            env=self.environment(),
            cwd=self.home,
        )

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            pgid = os.getpgid(pid)  # the launcher's group holds the Erlang VM too
        except ProcessLookupError:
            pgid = pid
        process.terminate(pid)
        deadline = time.monotonic() + 30
        while (members := _group_members(pgid)) and time.monotonic() < deadline:
            time.sleep(0.2)  # the VM flushes its queues to disk before it exits
        for member in members:
            process.terminate(member, timeout_s=5)
        self.pid_path.unlink(missing_ok=True)
        self._stop_epmd()
        return True

    def _stop_epmd(self) -> None:
        if not EPMD.is_file():
            return
        r = self.settings.rabbitmq
        if not process.port_in_use(r.host, r.epmd_port):
            return
        env = {**os.environ, "ERL_EPMD_PORT": str(r.epmd_port), "ERL_EPMD_ADDRESS": r.host}
        subprocess.run([str(EPMD), "-kill"], env=env, capture_output=True, timeout=10, check=False)

    def probe(self) -> str | None:
        r = self.settings.rabbitmq
        with socket.create_connection((r.host, r.port), timeout=2) as connection:
            connection.sendall(_AMQP_HEADER)
            data = connection.recv(4096)
        if not data.startswith(b"\x01\x00\x00"):  # a method frame on channel 0: Connection.Start
            return None
        return f"RabbitMQ {server_version(data) or '?'}, user {r.user}"
