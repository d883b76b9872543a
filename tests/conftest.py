"""Shared fixtures: settings from the environment, and the running local stack."""

from __future__ import annotations

import pytest

from config.settings import Settings, load_settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The same settings the CLI uses (environment plus generated local credentials)."""
    return load_settings()
