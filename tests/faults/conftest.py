"""Fault tests use the integration fixtures (they need the real stack)."""

from tests.integration.conftest import stack_is_ready

__all__ = ["stack_is_ready"]
