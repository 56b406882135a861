"""The fallback loop: candidates in order, attempts within a candidate, until enough images.

generate  →  for each candidate that can serve the request:
               run_attempt → on failure: decide(kind) → wait & retry · other key · next · stop
"""

from __future__ import annotations

import asyncio
import time

from imagegate.core.errors import (
    AllCandidatesFailed,
    AttemptFailure,
    FailureKind,
    UnsupportedRequest,
    UpstreamError,
)
from imagegate.core.request import ImageRequest
from imagegate.core.result import Attempt, ImageResult
from imagegate.router.attempt import run_attempt
from imagegate.router.decide import decide
from imagegate.router.plan import Gap, find_gap
from imagegate.router.table import Candidate, RouteTable

MAX_ATTEMPTS = 8  # attempts per client request, across candidates: bounds the worst case


class Router:
    def __init__(self, table: RouteTable) -> None:
        self.table = table

    async def generate(self, request: ImageRequest) -> ImageResult:
        """Images for `request`, from the first candidates able to make them.

        Raises ModelNotFound, UnsupportedRequest, or AllCandidatesFailed carrying every attempt.
        """
        route = self.table.route(request.model)
        usable, gaps = _usable_candidates(route.candidates, request)
        if not usable:
            gap = gaps[0]
            raise UnsupportedRequest(
                f"No deployment of `{route.alias}` supports this `{gap.param}`:"
                f" it offers {gap.reason}.",
                param=gap.param,
            )
        run = _Run(request)
        try:
            for position, candidate in enumerate(usable):
                is_last = position == len(usable) - 1
                if not await run.try_candidate(candidate, is_last=is_last) or run.needed == 0:
                    break
        except BaseException:
            await run.discard()
            raise
        if run.needed > 0:
            await run.discard()
            raise run.failure()
        return run.merged()


def _usable_candidates(
    candidates: tuple[Candidate, ...], request: ImageRequest
) -> tuple[list[Candidate], list[Gap]]:
    usable: list[Candidate] = []
    gaps: list[Gap] = []
    for candidate in candidates:
        gap = find_gap(candidate.capabilities, request)
        if gap is None:
            usable.append(candidate)
        else:
            gaps.append(gap)
    return usable, gaps


class _Run:
    """The state of one client request as it moves through candidates."""

    def __init__(self, request: ImageRequest) -> None:
        self.request = request
        self.needed = request.n
        self.results: list[ImageResult] = []
        self.records: list[Attempt] = []
        self.errors: list[UpstreamError] = []
        self.attempts = 0  # one attempt may be several parallel calls (fan-out)

    async def try_candidate(self, candidate: Candidate, *, is_last: bool) -> bool:
        """Attempt `candidate` until it yields the images, or the action says move on.

        Returns False when the request must stop here (no fall-over for this failure kind).
        """
        retry = 0
        while self.needed > 0 and self.attempts < MAX_ATTEMPTS:
            if self._deadline_passed():
                return False
            self.attempts += 1
            key = candidate.next_key()
            outcome = await run_attempt(candidate, self.request, self.needed, key)
            self.records.extend(outcome.records)
            self.results.extend(outcome.results)
            self.needed -= outcome.images
            if not outcome.errors:
                continue
            error = _most_telling(outcome.errors)
            self.errors.append(error)
            action = decide(error.kind)
            allowed = action.retries + (action.retries_if_last if is_last else 0)
            if retry >= allowed:
                return action.fall_over
            delay = action.delay(retry, error.retry_after)
            if not self._can_wait(delay):
                return action.fall_over
            retry += 1
            if delay:
                await asyncio.sleep(delay)
        return True

    def _deadline_passed(self) -> bool:
        return self.request.deadline is not None and time.monotonic() >= self.request.deadline

    def _can_wait(self, delay: float) -> bool:
        if self.request.deadline is None:
            return True
        # Waiting only helps if an attempt can still finish after it; keep a second for that.
        return time.monotonic() + delay + 1.0 < self.request.deadline

    def merged(self) -> ImageResult:
        first = self.results[0]
        return ImageResult(
            images=[image for result in self.results for image in result.images],
            provider=first.provider,
            deployment=first.deployment,
            model=first.model,
            text=first.text,
            revised_prompt=first.revised_prompt,
            attempts=self.records,
            notes=[note for result in self.results for note in result.notes],
            # Streamed parts complete their usage only once read, so it is summed on demand.
            parts=list(self.results),
        )

    def failure(self) -> AllCandidatesFailed:
        if self.errors:
            final = self.errors[-1]
        else:
            final = UpstreamError(
                FailureKind.TIMEOUT, "the request deadline passed before an upstream could answer"
            )
        attempts = [
            AttemptFailure(r.deployment, r.kind, r.status, r.diagnosis)
            for r in self.records
            if r.kind is not None
        ]
        return AllCandidatesFailed(final, attempts)

    async def discard(self) -> None:
        for result in self.results:
            await result.aclose()
        self.results.clear()


# When a fanned-out attempt fails in several ways, report the one that says most about the fix.
_PRIORITY = [
    FailureKind.BAD_REQUEST,
    FailureKind.SAFETY,
    FailureKind.AUTH,
    FailureKind.BILLING,
    FailureKind.QUOTA_ZERO,
    FailureKind.NOT_FOUND,
]


def _most_telling(errors: list[UpstreamError]) -> UpstreamError:
    return min(
        errors, key=lambda e: _PRIORITY.index(e.kind) if e.kind in _PRIORITY else len(_PRIORITY)
    )
