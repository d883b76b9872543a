"""The schema screen checks a partition's records on its own write lane's connection.

With ``sink.write_lanes`` above 1, partitions of a take are written concurrently, one per
lane. The screen used lane 0's connection for every lane, so a lane-1 batch's check ran on
the connection lane 0 was committing on ("another operation is in progress", found by the
latency benchmark with two lanes). Pure: stand-in connections and guard, no database.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents.medallion_schema import SchemaScreen
from serdes.consumer_step import Backoff
from tests.unit.lane_connections import LaneConnections


class FlakyGuard:
    """Fails its first check with a lost connection, then lets every record through."""

    def __init__(self) -> None:
        self.checked_on: list[str] = []

    async def screen(self, connection: str, records: list[Any]) -> list[Any]:
        self.checked_on.append(connection)
        if len(self.checked_on) == 1:
            raise ConnectionResetError("connection lost")
        return records


class Retries:
    def __init__(self) -> None:
        self.counted = 0

    def count_db_retry(self) -> None:
        self.counted += 1


async def test_a_lane_screens_and_retries_on_its_own_connection() -> None:
    guard, connections, retries = FlakyGuard(), LaneConnections(), Retries()
    screen = SchemaScreen(
        guard,  # type: ignore[arg-type]
        connections,  # type: ignore[arg-type]
        retries,  # type: ignore[arg-type]
        Backoff(0.001, 0.001),
    )

    async def hold(seconds: float) -> None:
        await asyncio.sleep(seconds)

    records = ["a", "b"]
    passed = await screen.screen(records, hold, asyncio.Event(), slot=1)  # type: ignore[arg-type]
    assert passed == records
    assert guard.checked_on == ["lane-1", "lane-1"]
    assert connections.dropped == [1]  # the failed connection of lane 1, not lane 0's
    assert retries.counted == 1
