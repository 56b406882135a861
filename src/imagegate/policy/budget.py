"""Budget periods of a client key (the UTC day and month) and the refusal that names them."""

from __future__ import annotations

import datetime

from imagegate.core.errors import BudgetExceeded
from imagegate.ledger.pricing import format_usd
from imagegate.state.bookings import BudgetRefusal, Period
from imagegate.state.keys import ClientKey


def periods(key: ClientKey, now: datetime.datetime) -> tuple[Period, ...]:
    """The key's day and month, each with its budget (None: no budget, spend is still counted)."""
    day = now.date()
    return (
        Period("day", day.isoformat(), key.budget_day_micros),
        Period("month", day.replace(day=1).isoformat(), key.budget_month_micros),
    )


def resets_at(period: Period) -> datetime.datetime:
    start = datetime.date.fromisoformat(period.start)
    if period.name == "day":
        end = start + datetime.timedelta(days=1)
    else:
        end = (start.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)
    return datetime.datetime.combine(end, datetime.time(), datetime.UTC)


def refusal(key: ClientKey, hit: BudgetRefusal, now: datetime.datetime) -> BudgetExceeded:
    resets = resets_at(hit.period)
    budget = hit.period.budget_micros or 0
    what = "daily" if hit.period.name == "day" else "monthly"
    message = (
        f"The {what} budget of key {key.name!r} is ${format_usd(budget)}: "
        f"${format_usd(hit.spent_micros)} is booked or reserved and this request may cost up to "
        f"${format_usd(hit.estimate_micros)}. The budget resets at "
        f"{resets.isoformat().replace('+00:00', 'Z')} (UTC "
        f"{'midnight' if hit.period.name == 'day' else 'start of the month'})."
    )
    return BudgetExceeded(message, retry_after=(resets - now).total_seconds())
