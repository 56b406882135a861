"""The health board keeps each deployment's breaker, success rate, latencies and last failure."""

from __future__ import annotations

import math
import random

import pytest

from imagegate.core.errors import FailureKind
from imagegate.router.breaker import BreakerPolicy, BreakerState
from imagegate.router.health import MIN_LATENCY_SAMPLES, HealthBoard


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def wall_clock() -> FakeClock:
    return FakeClock(1_750_000_000.0)


@pytest.fixture
def board(clock: FakeClock, wall_clock: FakeClock) -> HealthBoard:
    return HealthBoard(clock=clock, wall_clock=wall_clock)


def test_a_deployment_never_called_has_no_figures(board: HealthBoard) -> None:
    board.breaker("flux")
    (health,) = board.snapshot()
    assert (health.deployment, health.state, health.calls, health.successes) == (
        "flux",
        BreakerState.CLOSED,
        0,
        0,
    )
    assert health.success_rate is None and health.latency_p50 is None
    assert health.last_failure_kind is None and health.last_failure_at is None
    assert dict(health.counts) == {}


def test_the_success_rate_covers_the_last_window_outcomes(
    clock: FakeClock, wall_clock: FakeClock
) -> None:
    board = HealthBoard(clock=clock, wall_clock=wall_clock, window=10)
    for _ in range(10):
        board.record("flux", FailureKind.RATE_LIMITED, 0.1)
    (health,) = board.snapshot()
    assert health.success_rate == 0.0
    for _ in range(7):
        board.record("flux", None, 1.0)
    (health,) = board.snapshot()
    assert health.success_rate == 0.7  # 7 of the last 10, though 7 of 17 since start
    assert (health.calls, health.successes) == (17, 7)


def test_latency_percentiles_are_nearest_rank_over_successes(board: HealthBoard) -> None:
    for hundredths in range(100, 0, -1):
        board.record("flux", None, hundredths / 100)
    board.record("flux", FailureKind.TIMEOUT, 120.0)  # a failure's duration is no latency
    (health,) = board.snapshot()
    assert (health.latency_p50, health.latency_p90, health.latency_p99) == (0.5, 0.9, 0.99)
    assert board.latency_percentile("flux", 100) == 1.0
    assert board.latency_percentile("flux", 0.1) == 0.01


def test_latencies_cover_the_last_window_successes(board: HealthBoard) -> None:
    for seconds in [9.0] * 100 + [2.0] * 100:
        board.record("flux", None, seconds)
    assert board.latency_percentile("flux", 99) == 2.0


def test_no_percentile_until_enough_successes(board: HealthBoard) -> None:
    """Hedging on a percentile of a handful of calls would fire at random."""
    assert board.latency_percentile("never-seen", 90) is None
    for _ in range(MIN_LATENCY_SAMPLES - 1):
        board.record("flux", None, 1.0)
    assert board.latency_percentile("flux", 90) is None
    board.record("flux", None, 1.0)
    assert board.latency_percentile("flux", 90) == 1.0


@pytest.mark.parametrize("percentile", [0.0, -5.0, 100.5])
def test_a_percentile_outside_0_to_100_is_refused(board: HealthBoard, percentile: float) -> None:
    with pytest.raises(ValueError):
        board.latency_percentile("flux", percentile)


def test_a_window_too_small_for_percentiles_is_refused() -> None:
    with pytest.raises(ValueError):
        HealthBoard(window=MIN_LATENCY_SAMPLES - 1)


def test_the_last_failure_is_kept_with_its_diagnosis_and_wall_time(
    board: HealthBoard, wall_clock: FakeClock
) -> None:
    board.record("flux", FailureKind.CAPACITY, 0.3, "the model is under high demand")
    wall_clock.advance(60.0)
    board.record("flux", FailureKind.UNAVAILABLE, 0.2, "502 from the upstream")
    wall_clock.advance(60.0)
    board.record("flux", None, 1.0)  # a later success does not erase what went wrong last
    (health,) = board.snapshot()
    assert health.last_failure_kind is FailureKind.UNAVAILABLE
    assert health.last_failure_diagnosis == "502 from the upstream"
    assert health.last_failure_at == 1_750_000_060.0


def test_an_empty_diagnosis_reads_as_none(board: HealthBoard) -> None:
    board.record("flux", FailureKind.EMPTY, 0.3)
    (health,) = board.snapshot()
    assert health.last_failure_kind is FailureKind.EMPTY
    assert health.last_failure_diagnosis is None


def test_counts_by_kind_are_a_frozen_copy(board: HealthBoard) -> None:
    for kind in (None, None, FailureKind.SAFETY, FailureKind.TIMEOUT, FailureKind.TIMEOUT):
        board.record("flux", kind, 0.5)
    (health,) = board.snapshot()
    assert dict(health.counts) == {"ok": 2, "safety": 1, "timeout": 2}
    board.record("flux", None, 0.5)
    assert health.counts["ok"] == 2
    with pytest.raises(TypeError):
        health.counts["ok"] = 0  # type: ignore[index]


def test_recording_drives_the_deployments_breaker(board: HealthBoard, clock: FakeClock) -> None:
    for _ in range(BreakerPolicy().consecutive_failures):
        board.record("flux", FailureKind.UNAVAILABLE, 0.1)
    clock.advance(4.0)
    (health,) = board.snapshot()
    assert health.state is BreakerState.OPEN and health.retry_in == 6.0
    assert not board.breaker("flux").allow()


def test_key_level_failures_lower_the_rate_but_leave_the_breaker_closed(
    board: HealthBoard,
) -> None:
    for _ in range(20):
        board.record("flux", FailureKind.QUOTA_ZERO, 0.1)
    (health,) = board.snapshot()
    assert health.success_rate == 0.0 and health.state is BreakerState.CLOSED


def test_each_deployment_has_its_own_breaker_under_the_shared_policy(clock: FakeClock) -> None:
    board = HealthBoard(policy=BreakerPolicy(consecutive_failures=2), clock=clock)
    board.record("a", FailureKind.TIMEOUT, 1.0)
    board.record("a", FailureKind.TIMEOUT, 1.0)
    assert board.breaker("a").state is BreakerState.OPEN
    assert board.breaker("b").state is BreakerState.CLOSED
    assert board.breaker("a") is board.breaker("a")


def test_the_snapshot_lists_every_deployment_seen_sorted_by_name(board: HealthBoard) -> None:
    board.record("zimage", None, 1.0)
    board.breaker("gpt-image")  # looked up by the router, not yet called
    board.record("flux", None, 1.0)
    assert [h.deployment for h in board.snapshot()] == ["flux", "gpt-image", "zimage"]


def test_percentiles_follow_the_window_through_random_traffic() -> None:
    rng = random.Random(7)
    board = HealthBoard(window=20)
    seen: list[float] = []
    for _ in range(500):
        if rng.random() < 0.2:
            board.record("dep", FailureKind.UNAVAILABLE, 0.01)
            continue
        seconds = round(rng.uniform(0.1, 5.0), 2)  # ties included
        board.record("dep", None, seconds)
        seen.append(seconds)
        window = sorted(seen[-20:])
        for percentile in (50, 90, 99, 100):
            got = board.latency_percentile("dep", percentile)
            if len(window) < MIN_LATENCY_SAMPLES:
                assert got is None
            else:
                assert got == window[math.ceil(percentile / 100 * len(window)) - 1]
