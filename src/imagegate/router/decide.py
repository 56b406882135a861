"""Outcome → action: the one table that decides what happens after a failed attempt.

It is DESIGN.md's failure-kind table in code. Nothing else in imagegate decides on retries.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from imagegate.core.errors import FailureKind


@dataclass(frozen=True, slots=True)
class Action:
    retries: int  # further attempts on the same deployment before moving on
    first_delay: float  # seconds before the first retry when the upstream gave no hint
    rotate_key: bool  # a retry uses another key of the pool, if there is one
    fall_over: bool  # after the retries, try the next candidate; False ends the request
    retries_if_last: int = 0  # extra attempts when no other candidate is left

    def delay(self, retry: int, hint: float | None, cap: float = 30.0) -> float:
        """The wait before retry `retry` (from 0): the upstream's hint first, else doubling."""
        if hint is not None:
            return min(hint, cap)
        return min(self.first_delay * 2.0**retry, cap)


K = FailureKind
A = Action
# fmt: off
ACTIONS: dict[FailureKind, Action] = {
    # The key has no image quota at all: retrying it can never help; another key might.
    K.QUOTA_ZERO: A(retries=0, first_delay=0, rotate_key=True, fall_over=True),
    K.RATE_LIMITED: A(retries=1, first_delay=2, rotate_key=True, fall_over=True, retries_if_last=2),
    K.QUOTA_STUCK: A(retries=0, first_delay=0, rotate_key=True, fall_over=True),
    K.CAPACITY: A(retries=0, first_delay=5, rotate_key=False, fall_over=True, retries_if_last=2),
    K.BILLING: A(retries=0, first_delay=0, rotate_key=True, fall_over=True),
    K.AUTH: A(retries=0, first_delay=0, rotate_key=True, fall_over=True),
    # The request itself is wrong: another upstream would refuse it too.
    K.BAD_REQUEST: A(retries=0, first_delay=0, rotate_key=False, fall_over=False),
    K.NOT_FOUND: A(retries=0, first_delay=0, rotate_key=False, fall_over=True),
    # A refusal is an answer; routes may allow falling over (fall_over_on_safety).
    K.SAFETY: A(retries=0, first_delay=0, rotate_key=False, fall_over=False),
    # Transient failures: fall over at once; the last candidate left gets retries with backoff,
    # enough that a deployment failing 30 % still serves 99.5 % (0.3 ** 5 ≈ 0.2 %).
    K.EMPTY: A(retries=1, first_delay=0, rotate_key=False, fall_over=True, retries_if_last=2),
    K.UNAVAILABLE: A(retries=0, first_delay=0.5, rotate_key=False, fall_over=True, retries_if_last=4),  # noqa: E501
    K.TIMEOUT: A(retries=0, first_delay=1, rotate_key=False, fall_over=True, retries_if_last=2),
    K.MISMATCH: A(retries=0, first_delay=0, rotate_key=False, fall_over=True, retries_if_last=1),
}
# fmt: on


def decide(
    kind: FailureKind,
    *,
    retries: int | None = None,
    fall_over_on_safety: bool = False,
    fall_over_on_mismatch: bool = True,
) -> Action:
    """The action for `kind`, with a route's overrides applied (its retries, safety fall-over).

    A route's retry count is the whole number of retries on a deployment for that kind, last
    candidate or not.
    """
    action = ACTIONS[kind]
    if retries is not None:
        action = dataclasses.replace(action, retries=retries, retries_if_last=0)
    if kind is FailureKind.SAFETY and fall_over_on_safety:
        action = dataclasses.replace(action, fall_over=True)
    if kind is FailureKind.MISMATCH and not fall_over_on_mismatch:
        action = dataclasses.replace(action, fall_over=False, retries=0, retries_if_last=0)
    return action
