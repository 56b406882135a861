"""The breaker opens on deployment-level failures, probes once per cooldown, closes on success."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from imagegate.core.errors import FailureKind
from imagegate.router.breaker import COUNTED, Breaker, BreakerPolicy, BreakerState

FAIL = FailureKind.UNAVAILABLE
OK = None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def state(breaker: Breaker) -> BreakerState:
    # A call, not the property: mypy would narrow the property across calls that change it.
    return breaker.state


# The state machine is tested at these thresholds; the shipped defaults are tuned separately.
MECHANISM = {"consecutive_failures": 5, "error_rate": 0.5, "window": 20, "min_calls": 10}


def make(clock: FakeClock, **policy: float) -> Breaker:
    return Breaker(BreakerPolicy(**{**MECHANISM, **policy}), clock=clock)  # type: ignore[arg-type]


def feed(breaker: Breaker, outcomes: Sequence[FailureKind | None]) -> None:
    for kind in outcomes:
        assert breaker.allow()
        breaker.record(kind)


def trip(breaker: Breaker) -> None:
    feed(breaker, [FAIL] * breaker.policy.consecutive_failures)
    assert state(breaker) is BreakerState.OPEN


def probe(breaker: Breaker, clock: FakeClock, kind: FailureKind | None) -> None:
    """Wait out the cooldown, take the probe slot, and report the probe's outcome."""
    clock.advance(breaker.snapshot().cooldown)
    assert breaker.allow()
    breaker.record(kind)


# --- closed ---------------------------------------------------------------------------------


def test_successes_keep_it_closed(clock: FakeClock) -> None:
    breaker = make(clock)
    feed(breaker, [OK] * 100)
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.retry_in is None and breaker.opened_at is None


def test_opens_on_the_fifth_consecutive_failure(clock: FakeClock) -> None:
    breaker = make(clock)
    feed(breaker, [FAIL] * 4)
    assert state(breaker) is BreakerState.CLOSED and breaker.consecutive_failures == 4
    feed(breaker, [FAIL])
    assert state(breaker) is BreakerState.OPEN
    assert breaker.opened_at == clock.now and breaker.retry_in == 10.0
    assert not breaker.allow()


def test_a_success_breaks_the_streak(clock: FakeClock) -> None:
    breaker = make(clock)
    feed(breaker, [FAIL] * 4 + [OK] + [FAIL] * 4)
    assert state(breaker) is BreakerState.CLOSED and breaker.consecutive_failures == 4


def test_opens_on_error_rate_once_min_calls_are_known(clock: FakeClock) -> None:
    breaker = make(clock, consecutive_failures=100)
    # 3 of 4 failed: a high rate, but too few calls to judge.
    feed(breaker, [FAIL, FAIL, OK, FAIL])
    assert state(breaker) is BreakerState.CLOSED
    # 5 of 9, then the 10th call is a failure: 6 of 10 ≥ 50 %.
    feed(breaker, [OK, FAIL, OK, OK, FAIL])
    assert state(breaker) is BreakerState.CLOSED
    feed(breaker, [FAIL])
    assert state(breaker) is BreakerState.OPEN


def test_an_error_rate_below_the_threshold_stays_closed(clock: FakeClock) -> None:
    breaker = make(clock, consecutive_failures=100)
    feed(breaker, [FAIL, OK, OK, FAIL, OK] * 40)  # 40 % failures
    assert state(breaker) is BreakerState.CLOSED


def test_only_the_last_window_outcomes_count(clock: FakeClock) -> None:
    breaker = make(clock, consecutive_failures=100, window=10)
    feed(breaker, [OK] * 30)
    # Over all 39 calls, 5 failures are 13 %; over the last 10 (one early OK + 9), 5 are 50 %.
    feed(breaker, [FAIL, OK] * 4 + [FAIL])
    assert state(breaker) is BreakerState.OPEN


@pytest.mark.parametrize("kind", sorted(set(FailureKind) - COUNTED))
def test_key_and_client_level_kinds_never_trip_it(clock: FakeClock, kind: FailureKind) -> None:
    breaker = make(clock)
    feed(breaker, [kind] * 50)
    assert state(breaker) is BreakerState.CLOSED and breaker.consecutive_failures == 0


def test_key_and_client_level_kinds_do_not_break_a_streak(clock: FakeClock) -> None:
    """They are neither success nor failure: a 429 between outages leaves the count alone."""
    breaker = make(clock)
    feed(breaker, [FAIL] * 4 + [FailureKind.RATE_LIMITED, FailureKind.SAFETY] + [FAIL])
    assert state(breaker) is BreakerState.OPEN


@pytest.mark.parametrize("kind", sorted(COUNTED))
def test_every_deployment_level_kind_counts(clock: FakeClock, kind: FailureKind) -> None:
    breaker = make(clock)
    feed(breaker, [kind] * 5)
    assert state(breaker) is BreakerState.OPEN


# --- open and half-open ---------------------------------------------------------------------


def test_open_refuses_until_the_cooldown_has_passed(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    clock.advance(9.5)
    assert breaker.retry_in == pytest.approx(0.5)
    assert not breaker.allow() and state(breaker) is BreakerState.OPEN
    clock.advance(0.5)
    assert breaker.retry_in == 0.0
    assert state(breaker) is BreakerState.OPEN  # until a caller takes the probe slot


def test_half_open_lets_exactly_one_probe_through(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    clock.advance(10.0)
    assert [breaker.allow() for _ in range(5)] == [True, False, False, False, False]
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.retry_in is None and breaker.snapshot().probing


def test_a_successful_probe_closes_it_and_resets_the_cooldown(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    probe(breaker, clock, FAIL)  # the cooldown is now 20 s
    probe(breaker, clock, OK)
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0 and breaker.opened_at is None
    assert breaker.allow() and breaker.allow()
    trip(breaker)
    assert breaker.retry_in == 10.0


def test_each_failed_probe_doubles_the_cooldown_up_to_the_cap(clock: FakeClock) -> None:
    breaker = make(clock, open_seconds=10.0, max_open_seconds=35.0)
    trip(breaker)
    cooldowns = []
    for _ in range(4):
        probe(breaker, clock, FailureKind.TIMEOUT)
        assert state(breaker) is BreakerState.OPEN and not breaker.allow()
        cooldowns.append(breaker.retry_in)
    assert cooldowns == [20.0, 35.0, 35.0, 35.0]


@pytest.mark.parametrize("kind", [FailureKind.RATE_LIMITED, FailureKind.BAD_REQUEST])
def test_an_inconclusive_probe_reopens_with_the_same_cooldown(
    clock: FakeClock, kind: FailureKind
) -> None:
    breaker = make(clock)
    trip(breaker)
    probe(breaker, clock, FAIL)
    probe(breaker, clock, kind)
    assert state(breaker) is BreakerState.OPEN
    assert breaker.opened_at == clock.now
    assert breaker.retry_in == 20.0  # restarted, not doubled
    assert not breaker.allow()


def test_a_cancelled_probe_frees_the_slot_for_the_next_caller(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.allow()
    breaker.cancel_probe()
    assert state(breaker) is BreakerState.HALF_OPEN and breaker.retry_in == 0.0
    assert breaker.allow() and not breaker.allow()


def test_a_probe_that_never_reports_is_presumed_lost(clock: FakeClock) -> None:
    """A caller that was allowed and never reported must not keep the deployment out for good."""
    breaker = make(clock, probe_timeout=60.0)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.allow()
    clock.advance(59.0)
    assert not breaker.allow() and breaker.retry_in is None
    clock.advance(1.0)
    assert breaker.retry_in == 0.0
    assert breaker.allow() and not breaker.allow()
    breaker.record(OK)
    assert state(breaker) is BreakerState.CLOSED


def test_cancel_probe_outside_half_open_changes_nothing(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.cancel_probe()
    assert breaker.allow() and state(breaker) is BreakerState.CLOSED
    trip(breaker)
    breaker.cancel_probe()
    assert state(breaker) is BreakerState.OPEN and not breaker.allow()


def test_outcomes_of_calls_allowed_before_it_opened_are_ignored_while_open(
    clock: FakeClock,
) -> None:
    breaker = make(clock)
    in_flight = [breaker.allow() for _ in range(3)]
    trip(breaker)
    clock.advance(4.0)
    for kind in (OK, FAIL, OK):
        breaker.record(kind)
    assert all(in_flight)
    assert state(breaker) is BreakerState.OPEN and breaker.retry_in == 6.0


def test_opening_clears_the_window(clock: FakeClock) -> None:
    """After recovery the error rate starts afresh: it needs min_calls new outcomes again."""
    breaker = make(clock, consecutive_failures=100)
    feed(breaker, [OK, FAIL] * 5)
    assert state(breaker) is BreakerState.OPEN
    probe(breaker, clock, OK)
    # 5 of 9 failed: not yet min_calls. Had the window kept the 10 before, 10 of 19 would trip.
    feed(breaker, [FAIL, OK] * 4 + [FAIL])
    assert state(breaker) is BreakerState.CLOSED


def test_the_snapshot_is_a_frozen_copy(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    clock.advance(3.0)
    snap = breaker.snapshot()
    assert (snap.state, snap.opened_at, snap.retry_in) == (BreakerState.OPEN, 1000.0, 7.0)
    assert (snap.cooldown, snap.consecutive_failures, snap.probing) == (10.0, 5, False)
    clock.advance(10.0)
    breaker.allow()
    assert snap.state is BreakerState.OPEN and state(breaker) is BreakerState.HALF_OPEN


@pytest.mark.parametrize(
    "policy",
    [
        {"consecutive_failures": 0},
        {"error_rate": 0.0},
        {"error_rate": 1.5},
        {"window": 20, "min_calls": 30},  # more than the window: the rate could never be judged
        {"open_seconds": 0.0},
        {"max_open_seconds": 5.0},
        {"probe_timeout": 0.0},
    ],
)
def test_a_policy_that_cannot_work_is_refused(policy: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(**policy)  # type: ignore[arg-type]


# --- simulation -----------------------------------------------------------------------------


@dataclass
class Traffic:
    calls: int = 0
    upstream: int = 0  # calls made to any upstream, primary and fallback
    primary: int = 0

    @property
    def calls_per_success(self) -> float:
        return self.upstream / self.calls  # the fallback is healthy: every call succeeds


def simulate(
    failure_rate: float, calls: int, *, seed: int = 7, step: float = 0.008, latency: float = 0.12
) -> Traffic:
    """A primary failing at `failure_rate` before a healthy fallback, at one call per `step`
    seconds, each taking `latency` (16 in flight at 8 ms / 120 ms). A call the breaker refuses,
    or one that fails on the primary, is served by the fallback."""
    rng = random.Random(seed)
    clock = FakeClock()
    breaker = Breaker(clock=clock)
    in_flight: deque[tuple[float, FailureKind | None]] = deque()  # (done at, outcome), in order
    traffic = Traffic()
    for _ in range(calls):
        clock.advance(step)
        while in_flight and in_flight[0][0] <= clock.now:
            breaker.record(in_flight.popleft()[1])
        traffic.calls += 1
        traffic.upstream += 1
        if breaker.allow():
            traffic.primary += 1
            failed = rng.random() < failure_rate
            in_flight.append((clock.now + latency, FAIL if failed else OK))
            traffic.upstream += failed  # the fallback serves it after the primary failed
    return traffic


def test_a_mostly_failing_primary_is_taken_out_of_rotation() -> None:
    """The chaos target: 70 % failures on the primary, ≤ 1.3 upstream calls per success.

    Seed 7, 2,000 calls over 16 s: the primary gets 20 calls (19 before the breaker opens, as
    15 are in flight before the first answer; then one failed probe), 1.009 calls per success."""
    traffic = simulate(0.7, 2_000)
    assert traffic.calls_per_success <= 1.3
    assert traffic.primary <= 60  # at most two closed spells of ~25 calls (0.2 s) each


def test_a_healthy_primary_stays_in_rotation() -> None:
    traffic = simulate(0.05, 2_000)
    assert traffic.primary == traffic.calls
