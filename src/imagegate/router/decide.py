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
ACTIONS: dict[FailureKind, Action] = {
    # The key has no image quota at all: retrying it can never help.
    K.QUOTA_ZERO: Action(retries=0, first_delay=0, rotate_key=True, fall_over=True),
    K.RATE_LIMITED: Action(
        retries=1, first_delay=2, rotate_key=True, fall_over=True, retries_if_last=2
    ),
    K.QUOTA_STUCK: Action(retries=0, first_delay=0, rotate_key=True, fall_over=True),
    K.CAPACITY: Action(
        retries=0, first_delay=5, rotate_key=False, fall_over=True, retries_if_last=1
    ),
    K.BILLING: Action(retries=0, first_delay=0, rotate_key=True, fall_over=True),
    K.AUTH: Action(retries=0, first_delay=0, rotate_key=True, fall_over=True),
    # The request itself is wrong: another upstream would refuse it too.
    K.BAD_REQUEST: Action(retries=0, first_delay=0, rotate_key=False, fall_over=False),
    K.NOT_FOUND: Action(retries=0, first_delay=0, rotate_key=False, fall_over=True),
    # Safety blocks fall over only where the route allows it (policy engine: route option).
    K.SAFETY: Action(retries=0, first_delay=0, rotate_key=False, fall_over=False),
    K.EMPTY: Action(retries=1, first_delay=0, rotate_key=False, fall_over=True),
    K.UNAVAILABLE: Action(
        retries=0, first_delay=0.5, rotate_key=False, fall_over=True, retries_if_last=1
    ),
    K.TIMEOUT: Action(retries=0, first_delay=0, rotate_key=False, fall_over=True),
    K.MISMATCH: Action(retries=0, first_delay=0, rotate_key=False, fall_over=True),
}


def decide(
    kind: FailureKind, *, retries: int | None = None, fall_over_on_safety: bool = False
) -> Action:
    """The action for `kind`, with a route's overrides applied (its retries, safety fall-over)."""
    action = ACTIONS[kind]
    if retries is not None:
        action = dataclasses.replace(action, retries=retries)
    if kind is FailureKind.SAFETY and fall_over_on_safety:
        action = dataclasses.replace(action, fall_over=True)
    return action
