"""Client-key limits over a sliding minute, and the budget periods with their reset times."""

from __future__ import annotations

import datetime

import pytest

from imagegate.policy.budget import periods, resets_at
from imagegate.policy.limits import ClientLimiter
from imagegate.state.bookings import Period
from imagegate.state.keys import ClientKey


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_images_per_minute_counts_n_and_says_when_room_comes() -> None:
    clock = Clock()
    limiter = ClientLimiter(clock)
    assert limiter.check_and_count("k", 2, rpm=None, ipm=3) is None
    clock.now += 20
    assert limiter.check_and_count("k", 1, rpm=None, ipm=3) is None
    hit = limiter.check_and_count("k", 1, rpm=None, ipm=3)
    assert hit is not None and hit.limit_name == "images per minute"
    assert (hit.limit, hit.used, hit.asked) == (3, 3, 1)
    assert hit.retry_after == pytest.approx(40)  # the first two images leave the window then
    clock.now += 40
    assert limiter.check_and_count("k", 1, rpm=None, ipm=3) is None


def test_requests_per_minute_and_keys_are_counted_apart() -> None:
    clock = Clock()
    limiter = ClientLimiter(clock)
    assert limiter.check_and_count("a", 1, rpm=1, ipm=None) is None
    assert limiter.check_and_count("b", 1, rpm=1, ipm=None) is None
    hit = limiter.check_and_count("a", 1, rpm=1, ipm=None)
    assert hit is not None and hit.limit_name == "requests per minute"
    assert hit.retry_after == pytest.approx(60)


def test_a_request_larger_than_the_limit_is_told_so() -> None:
    hit = ClientLimiter(Clock()).check_and_count("k", 5, rpm=None, ipm=4)
    assert hit is not None and hit.asked == 5 and hit.limit == 4


@pytest.mark.parametrize(
    ("period", "resets"),
    [
        (Period("day", "2025-06-30", None), "2025-07-01T00:00:00+00:00"),
        (Period("month", "2025-12-01", None), "2026-01-01T00:00:00+00:00"),
        (Period("month", "2024-02-01", None), "2024-03-01T00:00:00+00:00"),
    ],
)
def test_budgets_reset_at_utc_midnight_and_month_start(period: Period, resets: str) -> None:
    assert resets_at(period).isoformat() == resets


def test_periods_carry_the_keys_budgets() -> None:
    key = ClientKey("k", "k", budget_day_micros=5, budget_month_micros=None, lineage="k")
    now = datetime.datetime(2025, 6, 17, 23, 59, tzinfo=datetime.UTC)
    assert periods(key, now) == (
        Period("day", "2025-06-17", 5),
        Period("month", "2025-06-01", None),
    )
