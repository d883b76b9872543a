"""``async with`` for the clients that have ``start()`` and ``stop()`` (one definition, not one
copy per client)."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncStartStop:
    """Mixin: ``async with client:`` calls ``await client.start()`` and, always, ``stop()``."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
