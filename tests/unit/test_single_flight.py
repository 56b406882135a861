"""SingleFlight: callers of one key share one call; a caller that goes away stops nobody."""

from __future__ import annotations

import asyncio

import pytest

from imagegate.core.single_flight import SingleFlight


async def test_callers_share_one_call_and_a_cancelled_one_stops_nobody() -> None:
    calls = 0
    release = asyncio.Event()

    async def query() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "answer"

    flight: SingleFlight[str, str] = SingleFlight()
    waiters = [asyncio.ensure_future(flight.do("k", query)) for _ in range(5)]
    await asyncio.sleep(0)
    waiters[0].cancel()
    release.set()
    results = await asyncio.gather(*waiters[1:])
    assert results == ["answer"] * 4 and calls == 1
    assert await flight.do("k", query) == "answer" and calls == 2  # done: a new call


async def test_a_failure_reaches_every_caller_and_is_not_kept() -> None:
    attempts = 0

    async def failing() -> int:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0)
        raise OSError("database is down")

    flight: SingleFlight[None, int] = SingleFlight()
    outcomes = await asyncio.gather(
        *[flight.do(None, failing) for _ in range(3)], return_exceptions=True
    )
    assert all(isinstance(o, OSError) for o in outcomes) and attempts == 1
    with pytest.raises(OSError):
        await flight.do(None, failing)
    assert attempts == 2
