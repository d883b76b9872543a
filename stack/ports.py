"""Who holds a TCP port, and whether a port lies in this machine's ephemeral range.

A service's port can be taken in two ways while the service is down: another server listens
on it, or an outgoing connection of any program was given it as its ephemeral *source* port
(Linux hands those out from ``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 by
default; macOS and Windows from 49152-65535). The second kind accepts no connection, so a
connect probe does not see it, yet the server's ``bind`` fails. So the stack reads the kernel's
socket tables instead of probing, names the holder in its error, and keeps its default ports
below 32768 (docs/decisions/0018-ports-outside-the-ephemeral-range.md).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

#: The range Linux uses when ``ip_local_port_range`` cannot be read, and the IANA range that
#: macOS and Windows use; a default port must lie outside both.
LINUX_DEFAULT_EPHEMERAL = (32768, 60999)
IANA_EPHEMERAL = (49152, 65535)
#: Lowest port of any common ephemeral range: every default port of the stack lies below it.
LOWEST_COMMON_EPHEMERAL = min(LINUX_DEFAULT_EPHEMERAL[0], IANA_EPHEMERAL[0])

_PROC_NET = Path("/proc/net")
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: Kernel socket states (include/net/tcp_states.h) that hold a port for a new ``bind``.
#: TIME_WAIT (06) is left out, and so is any other socket no process owns: servers bind with
#: SO_REUSEADDR, which a listener or a live client's connection (bound without it) still
#: blocks, but the closing leftovers of the stopped server's own connections do not.
_LISTEN = "0A"
_STATE_NAMES = {
    "01": "established",
    "02": "connecting (SYN_SENT)",
    "03": "connecting (SYN_RECV)",
    "04": "closing (FIN_WAIT1)",
    "05": "closing (FIN_WAIT2)",
    "07": "closed",
    "08": "closing (CLOSE_WAIT)",
    "09": "closing (LAST_ACK)",
    _LISTEN: "listening",
    "0B": "closing",
}


@dataclass(frozen=True)
class PortHolder:
    """One socket that holds a local port: a listener or a connection using it as source."""

    state: str
    local: str
    remote: str
    pid: int | None
    command: str

    @property
    def listening(self) -> bool:
        return self.state == "listening"

    def describe(self) -> str:
        """``a listening process pid 12 (java)`` or ``an established connection ... of pid 7``."""
        owner = f"pid {self.pid} ({self.command})" if self.pid is not None else "an unknown process"
        if self.listening:
            return f"a listening socket of {owner}"
        return (
            f"an {self.state} connection {self.local} -> {self.remote} of {owner}, "
            "which was given this port as its ephemeral source port"
            if self.state == "established"
            else f"a {self.state} connection {self.local} -> {self.remote} of {owner}"
        )


def ephemeral_range() -> tuple[int, int]:
    """This machine's ephemeral port range (Linux: from /proc; elsewhere the IANA range)."""
    if not sys.platform.startswith("linux"):
        return IANA_EPHEMERAL
    try:
        low, high = (int(part) for part in _RANGE_FILE.read_text(encoding="ascii").split())
    except (OSError, ValueError):
        return LINUX_DEFAULT_EPHEMERAL
    return low, high


def in_range(port: int, port_range: tuple[int, int]) -> bool:
    return port_range[0] <= port <= port_range[1]


def port_holders(host: str, port: int) -> list[PortHolder]:
    """Sockets on this machine that would make a server's ``bind(host, port)`` fail.

    Linux only (``/proc/net/tcp``, ``tcp6``); elsewhere an empty list, and the caller falls
    back to a connect probe.
    """
    holders: list[PortHolder] = []
    for table in ("tcp", "tcp6"):
        holders.extend(_holders_in(_PROC_NET / table, host, port))
    return holders


def _holders_in(table: Path, host: str, port: int) -> list[PortHolder]:
    try:
        lines = table.read_text(encoding="ascii").splitlines()[1:]
    except OSError:
        return []
    found: list[PortHolder] = []
    for line in lines:
        fields = line.split()
        if len(fields) < 10:
            continue
        local_hex, remote_hex, state, inode = fields[1], fields[2], fields[3], fields[9]
        local_address, local_port = kernel_socket_address(local_hex)
        if local_port != port or state not in _STATE_NAMES:
            continue
        if state != _LISTEN and inode == "0":
            # An orphan (no process owns it): a stopped server's accepted connection still
            # closing. It was bound with SO_REUSEADDR like its listener, so it does not stop
            # the next bind (the port drill met FIN_WAIT2 leftovers of a killed Kafka).
            continue
        if not _overlaps(local_address, host):
            continue
        remote_address, remote_port = kernel_socket_address(remote_hex)
        pid, command = _owner(inode)
        found.append(
            PortHolder(
                state=_STATE_NAMES[state],
                local=f"{local_address}:{local_port}",
                remote=f"{remote_address}:{remote_port}",
                pid=pid,
                command=command,
            )
        )
    return found


def kernel_socket_address(hex_pair: str) -> tuple[str, int]:
    """Decode ``0100007F:1F90`` of ``/proc/net/tcp*`` (little-endian IPv4, or IPv6 in four
    LE words) to (address text, port)."""
    address_hex, port_hex = hex_pair.split(":")
    raw = bytes.fromhex(address_hex)
    if len(raw) == 4:
        return ".".join(str(b) for b in reversed(raw)), int(port_hex, 16)
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
    ipv6 = b"".join(words)
    if ipv6[:12] == b"\x00" * 10 + b"\xff\xff":  # IPv4-mapped
        return ".".join(str(b) for b in ipv6[12:]), int(port_hex, 16)
    groups = [ipv6[i : i + 2].hex() for i in range(0, 16, 2)]
    return ":".join(groups), int(port_hex, 16)


def _overlaps(bound: str, wanted: str) -> bool:
    """Would a socket bound to ``bound`` collide with a server binding ``wanted``?"""
    wildcard = {"0.0.0.0", "0000:0000:0000:0000:0000:0000:0000:0000"}  # noqa: S104
    return bound in wildcard or wanted in ("0.0.0.0", "::") or bound == wanted  # noqa: S104


def _owner(inode: str) -> tuple[int | None, str]:
    """The process holding socket ``inode`` (needs the right to read its /proc/<pid>/fd)."""
    if inode == "0":
        return None, "?"
    target = f"socket:[{inode}]"
    with os.scandir("/proc") as processes:
        pids = [int(entry.name) for entry in processes if entry.name.isdigit()]
    for pid in pids:
        if _holds(pid, target):
            return pid, _command(pid)
    return None, "?"


def _holds(pid: int, target: str) -> bool:
    try:
        with os.scandir(f"/proc/{pid}/fd") as descriptors:
            return any(_link(fd.path) == target for fd in descriptors)
    except OSError:
        return False  # gone, or not ours to read


def _link(path: str) -> str:
    try:
        return str(Path(path).readlink())
    except OSError:
        return ""


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip() or "?"
    except OSError:
        return "?"
