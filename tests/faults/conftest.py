"""Fault tests use the integration fixtures (they need the real stack)."""

import pytest

from tests.integration.conftest import stack_is_ready

__all__ = ["stack_is_ready"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The chaos soak restarts the stack's services: it runs last, so a service it left
    recovering (it waits for readiness, but a slow machine...) cannot fail another test."""
    soak = [item for item in items if item.path.name == "test_chaos_soak.py"]
    if soak:
        items[:] = [item for item in items if item not in soak] + soak
