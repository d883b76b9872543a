"""Fault tests use the integration fixtures (they need the real stack)."""

from collections.abc import Iterator

import pytest

from tests.faults.cli_workers import reap_all
from tests.integration.conftest import stack_is_ready

__all__ = ["stack_is_ready"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The chaos soak restarts the stack's services: it runs last, so a service it left
    recovering (it waits for readiness, but a slow machine...) cannot fail another test."""
    soak = [item for item in items if item.path.name == "test_chaos_soak.py"]
    if soak:
        items[:] = [item for item in items if item not in soak] + soak


@pytest.fixture(autouse=True)
def no_orphan_workers() -> Iterator[None]:
    """Kill whatever worker a test started and left running (a failed assertion, a timeout)."""
    yield
    reap_all()
