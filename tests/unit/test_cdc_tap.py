"""The CDC tap agent, fed through the agent test driver (no broker)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from agents.cdc_tap import change_key, register_cdc_tap
from config.errors import PermanentError
from config.settings import Settings
from streams.app import App, Record


def decode_json(value: bytes) -> Mapping[str, Any]:
    try:
        result: Mapping[str, Any] = json.loads(value)
    except ValueError as exc:
        raise PermanentError(f"not JSON: {exc}") from exc
    return result


def envelope(op: str, table: str = "orders") -> bytes:
    return json.dumps({"op": op, "source": {"schema": "public", "table": table}}).encode()


def test_change_key_names_table_and_operation() -> None:
    assert change_key("t", {"op": "u", "source": {"schema": "public", "table": "orders"}}) == (
        "public.orders:u"
    )
    assert change_key("bitvelocity.public.x", {"op": "d"}) == "bitvelocity.public.x:d"


async def test_tap_counts_changes_per_table_and_op_and_survives_poison() -> None:
    app = App("test", Settings())
    agent, counts = register_cdc_tap(app, ["cdc-test"], decode_json)
    values = [envelope("c"), envelope("c"), envelope("u"), b"\xff not json", None]
    await agent.feed(
        [Record("cdc-test", 0, offset, b"k", value) for offset, value in enumerate(values)]
    )
    await agent.feed([Record("cdc-test", 1, 0, b"k", envelope("d", "payments"))])
    assert agent.batches == 2
    assert agent.group_id == "bitvelocity-streams-cdc-tap"
    assert dict(counts) == {
        "public.orders:c": 2,
        "public.orders:u": 1,
        "cdc-test:undecodable": 1,
        "public.payments:d": 1,
    }


def test_an_agent_name_is_declared_once() -> None:
    app = App("test", Settings())
    register_cdc_tap(app, ["cdc-test"], decode_json)
    with pytest.raises(ValueError, match="declared twice"):
        register_cdc_tap(app, ["cdc-test"], decode_json)
