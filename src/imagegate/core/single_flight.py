"""Concurrent callers that ask the same question share one answer, not one query each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """While a call for `key` is running, later callers for that key await it instead of
    starting their own. It answers the thundering herd of a cache entry that expires under
    load: without it, every request in flight at that moment queries the database.
    """

    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Future[V]] = {}

    async def do(self, key: K, call: Callable[[], Awaitable[V]]) -> V:
        future = self._calls.get(key)
        if future is None:
            future = asyncio.ensure_future(call())
            self._calls[key] = future
            future.add_done_callback(partial(self._done, key))
        # Shielded: one caller cancelled (its client went away) does not cancel the others.
        return await asyncio.shield(future)

    def forget(self) -> None:
        """Later callers start a new call: what is in flight may predate a change."""
        self._calls.clear()

    def _done(self, key: K, future: asyncio.Future[V]) -> None:
        if self._calls.get(key) is future:
            del self._calls[key]
        if not future.cancelled():
            future.exception()  # retrieved, so no warning if every caller had gone
