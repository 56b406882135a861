"""Health per deployment: its breaker, success rate, latency percentiles, last failure.

The router records every upstream call here (`HealthBoard.record`); hedging reads
`latency_percentile`; the status surface renders `snapshot()` (`GET /v1/status`). Wire formats
stay out: this module hands out frozen dataclasses only.

Active probes (later, off by default, with a cost cap) need no other seam: a prober asks
`board.breaker(name).allow()` before its cheap call, so it takes the half-open probe slot like
any request would, and reports the result with `board.record(...)` — failures take a broken
deployment out, a successful probe brings it back.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from imagegate.core.errors import FailureKind
from imagegate.router.breaker import DEFAULT_POLICY, Breaker, BreakerPolicy, BreakerState, Clock

# Below this many successes a percentile is noise: hedging on it would fire at random.
MIN_LATENCY_SAMPLES = 10


@dataclass(frozen=True, slots=True)
class DeploymentHealth:
    """One deployment as the status page shows it.

    `success_rate` is over the last `window` outcomes of any kind; latencies are over the last
    `window` successes, None below MIN_LATENCY_SAMPLES. `calls`, `successes` and `counts` (by
    kind value, plus "ok") are since start. `last_failure_at` is wall-clock time, for display.
    """

    deployment: str
    state: BreakerState
    retry_in: float | None
    calls: int
    successes: int
    success_rate: float | None
    latency_p50: float | None
    latency_p90: float | None
    latency_p99: float | None
    last_failure_kind: FailureKind | None
    last_failure_diagnosis: str | None
    last_failure_at: float | None
    counts: Mapping[str, int]


@dataclass(slots=True)
class _Stats:
    window: int
    outcomes: deque[bool] = field(init=False)  # True = success
    latencies: deque[float] = field(init=False)  # seconds, successes only, oldest first
    ordered: list[float] = field(init=False)  # the same, sorted: a percentile is one lookup
    counts: Counter[str] = field(default_factory=Counter)
    last_failure_kind: FailureKind | None = None
    last_failure_diagnosis: str | None = None
    last_failure_at: float | None = None

    def __post_init__(self) -> None:
        self.outcomes = deque(maxlen=self.window)
        self.latencies = deque(maxlen=self.window)
        self.ordered = []

    def add(self, kind: FailureKind | None, seconds: float, diagnosis: str, now: float) -> None:
        self.outcomes.append(kind is None)
        self.counts["ok" if kind is None else kind.value] += 1
        if kind is None:
            if len(self.latencies) == self.window:
                del self.ordered[bisect.bisect_left(self.ordered, self.latencies[0])]
            self.latencies.append(seconds)
            bisect.insort(self.ordered, seconds)
        else:
            self.last_failure_kind = kind
            self.last_failure_diagnosis = diagnosis or None
            self.last_failure_at = now

    def success_rate(self) -> float | None:
        return sum(self.outcomes) / len(self.outcomes) if self.outcomes else None

    def percentile(self, percentile: float) -> float | None:
        if len(self.latencies) < MIN_LATENCY_SAMPLES:
            return None
        return _nearest_rank(self.ordered, percentile)


def _nearest_rank(ordered: list[float], percentile: float) -> float:
    # Nearest rank rather than interpolation: the answer is always a latency actually seen.
    rank = math.ceil(percentile / 100.0 * len(ordered))
    return ordered[rank - 1]


class HealthBoard:
    """Every deployment's breaker and statistics, created on first mention of its name."""

    def __init__(
        self,
        *,
        policy: BreakerPolicy = DEFAULT_POLICY,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        window: int = 100,
    ) -> None:
        if window < MIN_LATENCY_SAMPLES:
            raise ValueError(f"window must be at least {MIN_LATENCY_SAMPLES}")
        self._policy = policy
        self._clock = clock
        self._wall_clock = wall_clock
        self._window = window
        self._breakers: dict[str, Breaker] = {}
        self._stats: dict[str, _Stats] = {}

    def breaker(self, deployment: str) -> Breaker:
        breaker = self._breakers.get(deployment)
        if breaker is None:
            breaker = self._breakers[deployment] = Breaker(self._policy, clock=self._clock)
        return breaker

    def record(
        self, deployment: str, kind: FailureKind | None, seconds: float, diagnosis: str = ""
    ) -> None:
        """Book one finished call (None = success): statistics and the deployment's breaker."""
        self._stats_for(deployment).add(kind, seconds, diagnosis, self._wall_clock())
        self.breaker(deployment).record(kind)

    def latency_percentile(self, deployment: str, percentile: float) -> float | None:
        """Seconds within which `percentile`% of recent successes finished; None until
        MIN_LATENCY_SAMPLES successes are known. Raises ValueError unless 0 < percentile <= 100.
        """
        if not 0.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], not {percentile}")
        stats = self._stats.get(deployment)
        return None if stats is None else stats.percentile(percentile)

    def snapshot(self) -> list[DeploymentHealth]:
        """Every deployment seen so far (by a record or a breaker lookup), sorted by name."""
        names = sorted(self._breakers.keys() | self._stats.keys())
        return [self._health(name) for name in names]

    def _stats_for(self, deployment: str) -> _Stats:
        stats = self._stats.get(deployment)
        if stats is None:
            stats = self._stats[deployment] = _Stats(self._window)
        return stats

    def _health(self, deployment: str) -> DeploymentHealth:
        breaker = self.breaker(deployment)
        stats = self._stats_for(deployment)
        return DeploymentHealth(
            deployment=deployment,
            state=breaker.state,
            retry_in=breaker.retry_in,
            calls=stats.counts.total(),
            successes=stats.counts["ok"],
            success_rate=stats.success_rate(),
            latency_p50=stats.percentile(50),
            latency_p90=stats.percentile(90),
            latency_p99=stats.percentile(99),
            last_failure_kind=stats.last_failure_kind,
            last_failure_diagnosis=stats.last_failure_diagnosis,
            last_failure_at=stats.last_failure_at,
            # A copy behind a read-only view: the snapshot must not change as calls go on.
            counts=MappingProxyType(dict(stats.counts)),
        )
