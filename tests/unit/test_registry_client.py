"""Registry client error classes: unreachable is transient (retry), never permanent."""

from __future__ import annotations

import socket

import pytest

from config.errors import RegistryUnavailableError, TransientError
from config.settings import RegistrySettings
from serdes.registry import RegistryClient


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_registry_raises_a_transient_error_after_retries() -> None:
    settings = RegistrySettings(
        url=f"http://127.0.0.1:{closed_port()}", max_retries=2, timeout_s=0.5
    )
    with (
        RegistryClient(settings, backoff_s=0.01) as client,
        pytest.raises(RegistryUnavailableError, match="after 3 attempts") as caught,
    ):
        client.schema_by_id(1)
    assert isinstance(caught.value, TransientError)
