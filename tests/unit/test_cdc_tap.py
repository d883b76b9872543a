"""The CDC tap agent, driven through Faust's in-memory test context (no broker)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agents.cdc_tap import change_key, register_cdc_tap
from config.errors import PermanentError
from config.settings import Settings
from streams.app import create_app


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
    app = create_app(Settings(), store="memory://")
    agent, counts = register_cdc_tap(app, ["cdc-test"], decode_json)
    async with agent.test_context() as tap:
        for value in (
            envelope("c"),
            envelope("c"),
            envelope("u"),
            b"\xff not json",
            envelope("d", "payments"),
        ):
            await tap.put(value, key=b"k")
    assert dict(counts) == {
        "public.orders:c": 2,
        "public.orders:u": 1,
        "cdc-test:undecodable": 1,
        "public.payments:d": 1,
    }
