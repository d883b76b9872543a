"""Stand-in write-lane connections for the sink's pure unit tests: each lane's connection is
named by its slot, and every dropped lane is remembered."""

from __future__ import annotations


class LaneConnections:
    def __init__(self) -> None:
        self.dropped: list[int] = []

    async def writer(self, slot: int = 0) -> str:
        return f"lane-{slot}"

    def drop(self, slot: int = 0) -> None:
        self.dropped.append(slot)
