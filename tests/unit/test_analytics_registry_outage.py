"""A record the analytics cannot decode while the schema registry is down waits for it.

The 15-minute chaos run's registry outage outlasted the registry client's own retries and
the analytics exited its worker (I7). A transient error now retries the same record with
backoff (never skips it) until the take's deadline; past it, or when stopping, the runner gives
up before the batch's positions are stored: the take is dropped and read again from the applied
positions (after a hold that keeps the consumer in its group).
"""

from __future__ import annotations

import time

import pytest

from agents.analytics_decode import RegistryWait
from config.errors import RegistryUnavailableError
from serdes.consumer_step import Backoff


def waiting(*, stopping: bool = False) -> RegistryWait:
    return RegistryWait(Backoff(0.001, 0.002), lambda: stopping)


class FlakyRegistry:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def decode(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise RegistryUnavailableError("registry down")
        return "event"


def test_a_record_waits_for_the_registry_instead_of_exiting() -> None:
    registry = FlakyRegistry(failures=8)
    assert waiting().until_decoded(registry.decode, time.monotonic() + 60) == "event"
    assert registry.calls == 9


def test_past_the_deadline_the_take_gives_up_instead_of_blocking_the_consumer() -> None:
    registry = FlakyRegistry(failures=1_000_000)
    with pytest.raises(RegistryUnavailableError):
        waiting().until_decoded(registry.decode, time.monotonic() + 0.05)
    assert registry.calls >= 2


def test_a_stopping_runner_gives_up_waiting() -> None:
    with pytest.raises(RegistryUnavailableError):
        waiting(stopping=True).until_decoded(
            FlakyRegistry(failures=1).decode, time.monotonic() + 60
        )
