"""Single-flight: one load per key however many concurrent misses; errors shared."""

from __future__ import annotations

import asyncio

import pytest

from cache.single_flight import SingleFlight


async def test_concurrent_misses_share_one_load() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    readers = [asyncio.create_task(flights.run("k", load)) for _ in range(50)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*readers) == [42] * 50
    assert calls == 1


async def test_a_failed_load_fails_every_waiter_and_the_next_call_retries() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()

    async def failing() -> int:
        await release.wait()
        raise RuntimeError("db down")

    readers = [asyncio.create_task(flights.run("k", failing)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)

    async def ok() -> int:
        return 7

    assert await flights.run("k", ok) == 7


async def test_forgotten_flight_is_not_joined_by_later_callers() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    release = asyncio.Event()

    async def old() -> str:
        await release.wait()
        return "old"

    async def new() -> str:
        return "new"

    first = asyncio.create_task(flights.run("k", old))
    await asyncio.sleep(0)
    flights.forget("k")
    assert await flights.run("k", new) == "new"
    release.set()
    assert await first == "old"
    assert flights.loads == 2


async def test_cancelled_load_cancels_its_joiners() -> None:
    flights: SingleFlight[str, int] = SingleFlight()

    async def forever() -> int:
        await asyncio.Event().wait()
        return 0

    owner = asyncio.create_task(flights.run("k", forever))
    await asyncio.sleep(0)
    joiner = asyncio.create_task(flights.run("k", forever))
    await asyncio.sleep(0)
    owner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await joiner
