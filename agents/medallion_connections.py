"""The medallion sink's PostgreSQL connections: one per write lane, one for claims.

Claims on assignment have their own connection because they run while a batch is being
written. A connection that failed is dropped; the next use opens a new one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from config.settings import Settings
from sinks.postgres.connection import connect

#: No statement of the sink may wait longer (a lock wait behind a connection an outage cut
#: half-way): it fails as a ``TimeoutError`` and the batch is retried on a new connection.
COMMAND_TIMEOUT_S = 60.0


class SinkConnections:
    """Opens connections as the sink's worker role, on demand, and drops broken ones."""

    def __init__(
        self,
        settings: Settings,
        database: str | None,
        *,
        lanes: int,
        prepare: Callable[[asyncpg.Connection], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._database = database
        self._prepare = prepare
        self._writers: list[asyncpg.Connection | None] = [None] * lanes
        self._claims: asyncpg.Connection | None = None

    @property
    def lanes(self) -> int:
        return len(self._writers)

    async def writer(self, slot: int = 0) -> asyncpg.Connection:
        """Lane ``slot``'s connection, prepared for batch writes."""
        connection = self._writers[slot]
        if connection is None or connection.is_closed():
            connection = await self._open()
            self._writers[slot] = connection
            await self._prepare(connection)
        return connection

    async def open_all(self) -> None:
        """Every lane's connection, opened and prepared before the first batch needs it:
        a lane opened on first use made that batch wait for the connection and its warm-up."""
        for slot in range(self.lanes):
            await self.writer(slot)

    async def claims(self) -> asyncpg.Connection:
        if self._claims is None or self._claims.is_closed():
            self._claims = await self._open()
        return self._claims

    def drop(self, slot: int = 0) -> None:
        """Forget lane ``slot``'s connection after a failure."""
        _terminate(self._writers[slot])
        self._writers[slot] = None

    def drop_claims(self) -> None:
        _terminate(self._claims)
        self._claims = None

    def close(self) -> None:
        for slot in range(len(self._writers)):
            self.drop(slot)
        self.drop_claims()

    async def _open(self) -> asyncpg.Connection:
        pg = self._settings.postgres
        return await connect(
            pg,
            self._database,
            user=pg.worker_user,
            password=pg.worker_password.get_secret_value(),
            command_timeout=COMMAND_TIMEOUT_S,
        )


def _terminate(connection: asyncpg.Connection | None) -> None:
    if connection is not None:
        connection.terminate()
