"""The scale-out messaging services the tests need, checked like the rest of the stack."""

from __future__ import annotations

import pytest

from config.settings import Settings
from stack.manager import SCALEOUT_NAMES, Stack


def require_scaleout(settings: Settings) -> None:
    """Fail (not skip) when NATS or RabbitMQ is not running."""
    rows = Stack(settings, with_scaleout=True).status(SCALEOUT_NAMES)
    missing = [f"{row.name} ({row.state})" for row in rows if not row.ready]
    if missing:
        pytest.fail(
            f"scale-out services not ready: {', '.join(missing)}; run "
            "`bitvelocity stack up --with-scaleout` (or `./bv test`, which starts them)",
            pytrace=False,
        )
