"""Per-key image quotas in a rolling window, as an upstream enforces them (``--key-ipm``).

A fake with a quota counts the images each API key was granted over the last ``window_seconds``
and refuses a request that would take the key over its limit, telling when it would fit. Granted
requests count whatever scenario they then play (the upstream admitted them); refused ones do
not count (our choice: the reference does not say whether Google counts rejected calls).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class QuotaRefusal:
    """Why a request was refused: the limit, the key's usage now, and when the request fits."""

    limit: int
    used: int
    requested: int
    retry_after: float  # seconds until enough of the window has passed


@dataclass(slots=True)
class _KeyWindow:
    grants: deque[tuple[float, int]] = field(default_factory=deque)  # (when, images), in order
    used: int = 0

    def expire(self, horizon: float) -> None:
        while self.grants and self.grants[0][0] <= horizon:
            self.used -= self.grants.popleft()[1]


@dataclass(slots=True)
class KeyQuota:
    """``images_per_minute`` per key over a rolling ``window_seconds``; O(1) amortized per grant."""

    images_per_minute: int
    window_seconds: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _keys: dict[str, _KeyWindow] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images_per_minute < 0:
            raise ValueError(f"images_per_minute must be >= 0, got {self.images_per_minute}")

    def admit(self, key: str, images: int = 1) -> QuotaRefusal | None:
        """Grant ``images`` to ``key`` and return None, or refuse without counting anything."""
        now = self.clock()
        window = self._keys.setdefault(key, _KeyWindow())
        window.expire(now - self.window_seconds)
        if window.used + images <= self.images_per_minute:
            window.grants.append((now, images))
            window.used += images
            return None
        return QuotaRefusal(
            self.images_per_minute, window.used, images, self._wait(window, images, now)
        )

    def _wait(self, window: _KeyWindow, images: int, now: float) -> float:
        # Only refusals walk the window, and it holds at most `images_per_minute` grants.
        if images > self.images_per_minute:
            return self.window_seconds  # never fits; a full window is the honest upper hint
        freed = 0
        for granted_at, count in window.grants:
            freed += count
            if window.used - freed + images <= self.images_per_minute:
                return max(0.0, granted_at + self.window_seconds - now)
        return self.window_seconds
