"""Default ports lie below every common ephemeral range; a taken port names its holder."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from config.settings import RedisSettings, Settings
from stack import ports
from stack.base import Endpoint, port_taken_message
from stack.manager import Stack, application_endpoints


def _every_default_endpoint() -> list[Endpoint]:
    settings = Settings()
    stack = Stack(settings, with_monitoring=True, with_scaleout=True)
    return [e for s in stack.services for e in s.endpoints()] + application_endpoints(settings)


def test_every_default_port_is_outside_32768_to_65535() -> None:
    endpoints = _every_default_endpoint()
    assert len(endpoints) >= 18
    inside = [(e.setting, e.port) for e in endpoints if 32768 <= e.port <= 65535]
    assert inside == []


def test_default_ports_are_distinct() -> None:
    endpoints = _every_default_endpoint()
    assert len({e.port for e in endpoints}) == len(endpoints)


def test_up_warns_naming_the_setting_of_a_port_inside_the_ephemeral_range() -> None:
    settings = Settings(redis=RedisSettings(port=ports.ephemeral_range()[0] + 1))
    warnings = Stack(settings).ephemeral_port_warnings()
    assert len(warnings) == 1
    assert warnings[0].startswith(f"warning: BV_REDIS__PORT={ports.ephemeral_range()[0] + 1}")
    assert Stack(Settings()).ephemeral_port_warnings() == []


def test_ephemeral_range_is_read_from_the_kernel() -> None:
    low, high = ports.ephemeral_range()
    text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
    assert (low, high) == tuple(int(part) for part in text.split())


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("0100007F:1F90", ("127.0.0.1", 8080)),
        ("00000000:5BA0", ("0.0.0.0", 23456)),  # noqa: S104 - decoded text, not a bind
        ("0000000000000000FFFF00000100007F:5BA0", ("127.0.0.1", 23456)),
        ("00000000000000000000000001000000:0016", ("0000:0000:0000:0000:0000:0000:0000:0001", 22)),
    ],
)
def test_kernel_socket_addresses_decode(encoded: str, decoded: tuple[str, int]) -> None:
    assert ports.kernel_socket_address(encoded) == decoded


def test_a_listening_socket_and_a_connections_source_port_are_both_found() -> None:
    with socket.socket() as server, socket.socket() as client:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client.bind(("127.0.0.1", 0))
        client.connect(server.getsockname())
        listen_port, source_port = server.getsockname()[1], client.getsockname()[1]
        on_listen_port = ports.port_holders("127.0.0.1", listen_port)
        holders = ports.port_holders("127.0.0.1", source_port)
    (listener,) = [h for h in on_listen_port if h.listening]
    assert listener.pid == os.getpid()
    assert [h.state for h in holders] == ["established"]
    assert holders[0].remote == f"127.0.0.1:{listen_port}"
    assert holders[0].pid == os.getpid()


def test_the_taken_port_message_is_one_line_with_holder_setting_and_range() -> None:
    low, _ = ports.ephemeral_range()
    holder = ports.PortHolder(
        "established", f"127.0.0.1:{low + 5}", "127.0.0.1:23092", 4242, "java"
    )
    endpoint = Endpoint("cql", "127.0.0.1", low + 5, "BV_CASSANDRA__PORT")
    message = port_taken_message("cassandra", endpoint, holder)
    assert "\n" not in message
    assert f"127.0.0.1:{low + 5} -> 127.0.0.1:23092 of pid 4242 (java)" in message
    assert "BV_CASSANDRA__PORT" in message
    assert f"choose a port below {low}" in message
