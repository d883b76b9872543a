"""Restart services over and over while clients hold connections: the port drill of issue 25.

Each round stops one service, opens ``clients`` fresh TCP connections to the other running
services (every one takes an ephemeral source port from the kernel, as a worker's or
Connect's reconnects do), starts the service again and waits for it to be ready. With the
default ports below the ephemeral range no client can take a stopped service's port, so every
round succeeds; a port inside the range fails at random, which this drill makes visible.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from config.errors import BitVelocityError
from stack.base import Endpoint, Progress, Service
from stack.manager import Stack


@dataclass(frozen=True)
class CycleResult:
    """How the restarts of one service went."""

    service: str
    rounds: int
    failures: tuple[str, ...]

    @property
    def ok(self) -> int:
        return self.rounds - len(self.failures)


def cycle_services(
    stack: Stack, names: list[str] | None, times: int, clients: int, progress: Progress
) -> list[CycleResult]:
    """Stop and start each named service ``times`` times; collect, do not raise, failures."""
    results = []
    for service in stack.select(names):
        failures: list[str] = []
        for round_number in range(1, times + 1):
            progress(f"{service.name}: restart {round_number}/{times}")
            service.stop()
            with _client_connections(_others(stack, service), clients):
                try:
                    stack.up(progress, [service.name])
                except BitVelocityError as exc:
                    failures.append(f"round {round_number}: {exc}")
                    progress(f"{service.name}: restart {round_number} failed: {exc}")
        results.append(CycleResult(service.name, times, tuple(failures)))
    return results


def _others(stack: Stack, stopped: Service) -> list[Endpoint]:
    return [
        endpoint
        for service in stack.services
        if service.name != stopped.name and service.pid() is not None
        for endpoint in service.endpoints()
    ]


@contextlib.contextmanager
def _client_connections(targets: list[Endpoint], count: int) -> Iterator[int]:
    """Open up to ``count`` connections spread over ``targets``; yields how many opened."""
    opened: list[socket.socket] = []
    try:
        for index in range(count if targets else 0):
            target = targets[index % len(targets)]
            try:
                opened.append(socket.create_connection((target.host, target.port), timeout=2))
            except OSError:
                continue  # a service that refuses one more client is not what this drill tests
        yield len(opened)
    finally:
        for connection in opened:
            connection.close()
