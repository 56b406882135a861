"""Per-client-key request and image limits over a sliding minute, in this process's memory.

One replica counts exactly. Several replicas each count their own share, so a key's effective
limit is up to replicas × its limit; a shared counter in Redis (the `redis` extra, as the pacer
will use) is the path for that, behind the same `check_and_count` call.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOW_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class LimitHit:
    """Which limit refused the request, and when the window has room for it."""

    limit_name: str  # requests per minute | images per minute
    limit: int
    used: int
    asked: int
    retry_after: float


@dataclass(slots=True)
class _Window:
    events: deque[tuple[float, int]] = field(default_factory=deque)  # (when, images)
    requests: int = 0
    images: int = 0

    def expire(self, now: float) -> None:
        while self.events and self.events[0][0] <= now - WINDOW_SECONDS:
            _, images = self.events.popleft()
            self.requests -= 1
            self.images -= images

    def wait_for(self, now: float, free: Callable[[int, int], bool]) -> float:
        """Seconds until dropping the oldest events makes `free(requests, images)` true."""
        requests, images = self.requests, self.images
        for when, count in self.events:
            requests -= 1
            images -= count
            if free(requests, images):
                return max(0.0, when + WINDOW_SECONDS - now)
        return WINDOW_SECONDS


class ClientLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def check_and_count(
        self, key_id: str, images: int, *, rpm: int | None, ipm: int | None
    ) -> LimitHit | None:
        """Count this request against the key's minute, or say which limit it would break."""
        if rpm is None and ipm is None:
            return None
        now = self._clock()
        window = self._windows.setdefault(key_id, _Window())
        window.expire(now)
        if rpm is not None and window.requests + 1 > rpm:
            wait = window.wait_for(now, lambda r, _: r + 1 <= rpm)
            return LimitHit("requests per minute", rpm, window.requests, 1, wait)
        if ipm is not None and window.images + images > ipm:
            if images > ipm:
                return LimitHit("images per minute", ipm, window.images, images, WINDOW_SECONDS)
            wait = window.wait_for(now, lambda _, i: i + images <= ipm)
            return LimitHit("images per minute", ipm, window.images, images, wait)
        window.events.append((now, images))
        window.requests += 1
        window.images += images
        return None
