"""A circuit breaker per deployment: take a failing deployment out, probe it back in.

    CLOSED ──(N consecutive failures, or error rate over the window)──▶ OPEN
    OPEN ──(cooldown passed; the next allow() takes the one probe slot)──▶ HALF_OPEN
    HALF_OPEN ──probe succeeds──▶ CLOSED (cooldown back to open_seconds)
    HALF_OPEN ──probe fails──▶ OPEN (cooldown doubled, up to max_open_seconds)
    HALF_OPEN ──probe inconclusive──▶ OPEN (same cooldown, restarted)
    HALF_OPEN ──probe cancelled, or silent for probe_timeout──▶ HALF_OPEN (next allow() probes)

Only deployment-level failures count (`COUNTED`). Key- and client-level kinds (a 429 on one
key, a bad prompt, a safety block) say nothing about whether the deployment works, so they are
neither success nor failure — except that they end a probe, as "inconclusive".

The caller's contract: ask `allow()` before every call, and for every call it allowed, report
exactly one of `record(kind)` or `cancel_probe()` (cancel when the call was abandoned before
the upstream answered). `allow()` answers a bool, not a ticket, so the breaker cannot tell the
probe from a slower call allowed before it opened: in HALF_OPEN whichever reports first
decides, and a cancelled call frees the slot. At worst that lets a second probe go; and a
probe whose caller never reports is presumed lost after `probe_timeout`. State is in memory
and per process; there are no locks, as everything runs on one event loop.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from imagegate.core.errors import FailureKind

Clock = Callable[[], float]


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# Failures that say the deployment itself is broken or overloaded: they count against it.
COUNTED: frozenset[FailureKind] = frozenset(
    {
        FailureKind.UNAVAILABLE,
        FailureKind.TIMEOUT,
        FailureKind.CAPACITY,
        FailureKind.EMPTY,
        FailureKind.MISMATCH,
        FailureKind.NOT_FOUND,
    }
)


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When to open, and for how long.

    Opens after `consecutive_failures` counted failures in a row, or when at least `min_calls`
    of the last `window` counted outcomes are known and the share of failures among them is
    at least `error_rate`. It stays open `open_seconds`; each failed probe doubles that, up to
    `max_open_seconds`, and a successful probe resets it. A probe that has not reported after
    `probe_timeout` is presumed lost, and the next caller probes instead.
    """

    # Tuned so a deployment failing 70 % trips within ~20 calls while one failing 30 % (which
    # retries handle) almost never does: Binomial(40, 0.3) ≥ 24 has odds of about 1 in 10^5.
    consecutive_failures: int = 8
    error_rate: float = 0.6
    window: int = 40
    min_calls: int = 20
    open_seconds: float = 10.0
    max_open_seconds: float = 300.0
    # Longer than any image call should take: it only guards against a caller that was allowed
    # and never reported, which would otherwise keep the deployment out for good.
    probe_timeout: float = 300.0

    def __post_init__(self) -> None:
        problems = [
            message
            for failed, message in (
                (self.consecutive_failures < 1, "consecutive_failures must be at least 1"),
                (not 0.0 < self.error_rate <= 1.0, "error_rate must be in (0, 1]"),
                (not 1 <= self.min_calls <= self.window, "min_calls must be in [1, window]"),
                (self.open_seconds <= 0.0, "open_seconds must be positive"),
                (self.max_open_seconds < self.open_seconds, "max_open_seconds < open_seconds"),
                (self.probe_timeout <= 0.0, "probe_timeout must be positive"),
            )
            if failed
        ]
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """The breaker as the status page shows it; times are on the breaker's (monotonic) clock."""

    state: BreakerState
    opened_at: float | None
    retry_in: float | None
    cooldown: float
    consecutive_failures: int
    probing: bool


DEFAULT_POLICY = BreakerPolicy()


class Breaker:
    def __init__(
        self, policy: BreakerPolicy = DEFAULT_POLICY, *, clock: Clock = time.monotonic
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._opened_at: float | None = None
        self._probe_at = 0.0  # while OPEN: when the cooldown ends
        self._cooldown = policy.open_seconds
        self._consecutive = 0
        self._probe_started: float | None = None  # while HALF_OPEN: when the probe went out
        self._window: deque[bool] = deque(maxlen=policy.window)  # True = failure

    @property
    def state(self) -> BreakerState:
        """The stored state. An OPEN breaker whose cooldown has passed still reads OPEN (with
        `retry_in == 0`) until a caller's `allow()` takes the probe slot."""
        return self._state

    @property
    def opened_at(self) -> float | None:
        """When the breaker last opened (clock time); None while CLOSED."""
        return self._opened_at

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive

    @property
    def retry_in(self) -> float | None:
        """Seconds until a probe may go: 0 when one may go now, None when CLOSED (every call
        goes) or while the probe is out (its answer decides)."""
        if self._state is BreakerState.OPEN:
            return max(0.0, self._probe_at - self._clock())
        if self._state is BreakerState.HALF_OPEN and self._probe_free():
            return 0.0
        return None

    def allow(self) -> bool:
        """May a call go to this deployment now? A True in HALF_OPEN makes the caller the probe."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN and self.retry_in == 0.0:
            self._state = BreakerState.HALF_OPEN
        if self._state is BreakerState.HALF_OPEN and self._probe_free():
            self._probe_started = self._clock()
            return True
        return False

    def record(self, kind: FailureKind | None) -> None:
        """Report how an allowed call ended: None for success, else its failure kind.

        While OPEN, outcomes are ignored: they come from calls allowed before the breaker
        opened, and the cooldown should run its course whatever they say. In HALF_OPEN any
        outcome is taken as the probe's: a fresh answer from the deployment is evidence,
        whichever call brought it.
        """
        if self._state is BreakerState.CLOSED:
            self._record_closed(kind)
        elif self._state is BreakerState.HALF_OPEN:
            self._record_probe(kind)

    def cancel_probe(self) -> None:
        """The probe was abandoned before the upstream answered (a hedge won, the client left):
        free the slot so that the next `allow()` probes. A no-op outside HALF_OPEN."""
        self._probe_started = None

    def snapshot(self) -> BreakerSnapshot:
        return BreakerSnapshot(
            state=self._state,
            opened_at=self._opened_at,
            retry_in=self.retry_in,
            cooldown=self._cooldown,
            consecutive_failures=self._consecutive,
            probing=self._state is BreakerState.HALF_OPEN and not self._probe_free(),
        )

    def _probe_free(self) -> bool:
        if self._probe_started is None:
            return True
        return self._clock() - self._probe_started >= self.policy.probe_timeout

    def _record_closed(self, kind: FailureKind | None) -> None:
        if kind is None:
            self._consecutive = 0
            self._window.append(False)
        elif kind in COUNTED:
            self._consecutive += 1
            self._window.append(True)
            # Only a failure can raise the rate or the streak, so only a failure can trip it.
            if self._should_trip():
                self._open()

    def _should_trip(self) -> bool:
        if self._consecutive >= self.policy.consecutive_failures:
            return True
        calls = len(self._window)
        if calls < self.policy.min_calls:
            return False
        return sum(self._window) / calls >= self.policy.error_rate

    def _record_probe(self, kind: FailureKind | None) -> None:
        self._probe_started = None
        if kind is None:
            self._close()
        elif kind in COUNTED:
            self._consecutive += 1
            self._cooldown = min(self._cooldown * 2.0, self.policy.max_open_seconds)
            self._open()
        else:
            # Inconclusive (a key's 429, a refused prompt): no evidence, so no doubling; but
            # the slot is not simply freed either, or a run of such answers would become a
            # stream of back-to-back probes. Wait the same cooldown again.
            self._open()

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._probe_at = self._opened_at + self._cooldown
        # A fresh start after the cooldown: old failures must not re-trip a recovered deployment.
        self._window.clear()

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._opened_at = None
        self._consecutive = 0
        self._cooldown = self.policy.open_seconds
