"""Hedging: when an attempt runs long, start the next candidate; the first images win.

A route opts in (`hedge: {percentile: 90}`); the delay is the deployment's own latency at that
percentile, so a hedge fires only on the slow tail, not on every request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RaceResult(Generic[T]):
    winner: T
    loser: T | None  # the other outcome, if it finished; None if it never started or was cancelled
    backup_started: bool


async def race(
    primary: Awaitable[T],
    backup: Callable[[], Awaitable[T]],
    delay: float,
    succeeded: Callable[[T], bool],
) -> RaceResult[T]:
    """Run `primary`; if it has not finished after `delay` seconds, start `backup` too.

    The first outcome for which `succeeded` is true wins and the other task is cancelled; if the
    first to finish failed, the other is awaited and, whatever it gives, becomes the winner.
    """
    first = asyncio.ensure_future(primary)
    done, _ = await asyncio.wait({first}, timeout=delay)
    if done:
        return RaceResult(first.result(), None, backup_started=False)
    second = asyncio.ensure_future(backup())
    try:
        done, pending = await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
        winner = done.pop()
        other = second if winner is first else first
        if succeeded(winner.result()) or not pending:
            loser: T | None = await _cancel(other) if pending else other.result()
            return RaceResult(winner.result(), loser, backup_started=True)
        return RaceResult(await other, winner.result(), backup_started=True)
    except BaseException:
        for task in (first, second):
            await _cancel(task)
        raise


async def _cancel(task: asyncio.Future[Any]) -> Any:
    if task.done():
        return None if task.cancelled() else task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None
