"""The fallback loop: candidates in order, attempts within a candidate, until enough images.

generate  →  for each candidate that can serve the request and whose breaker allows it:
               run_attempt (paced per key) → on failure: decide(kind) →
               wait & retry · repaired retry · sibling variant · next candidate · stop
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Awaitable, Callable

from imagegate.core.errors import (
    AllCandidatesFailed,
    AttemptFailure,
    FailureKind,
    ModelRetired,
    UnsupportedRequest,
    UpstreamError,
)
from imagegate.core.request import ImageRequest
from imagegate.core.result import Attempt, ImageResult
from imagegate.router.attempt import AttemptContext, AttemptOutcome, run_attempt
from imagegate.router.decide import decide
from imagegate.router.health import HealthBoard
from imagegate.router.hedge import race
from imagegate.router.pacer import Pacer
from imagegate.router.plan import Gap, find_gap
from imagegate.router.table import Candidate, Route, RouteTable
from imagegate.router.table import today as table_today

MAX_ATTEMPTS = 8  # attempts per client request, across candidates: bounds the worst case
# Kinds for which a route's declared sibling model is the better next try.
VARIANT_KINDS = {FailureKind.QUOTA_STUCK, FailureKind.CAPACITY}


class Router:
    def __init__(
        self,
        table: RouteTable,
        pacer: Pacer,
        health: HealthBoard,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        today: Callable[[], datetime.date] = table_today,
    ) -> None:
        self.table = table
        self.today = today
        self.pacer = pacer
        self.health = health
        self.clock = clock
        self.sleep = sleep  # backoff waits; tests pass one that records instead of waiting
        self.key_failures: dict[str, UpstreamError] = {}

    async def generate(self, request: ImageRequest) -> ImageResult:
        """Images for `request`, from the first candidates able to make them.

        Raises ModelNotFound, UnsupportedRequest, or AllCandidatesFailed carrying every attempt.
        """
        route = self.table.route(request.model)
        warnings = [route.warning] if route.warning else []
        current = _current_candidates(route, self.today(), warnings)
        usable = _usable_candidates(route.alias, current, request)
        context = AttemptContext(
            self.pacer,
            self.health,
            [],
            self.clock,
            self.sleep,
            self.key_failures,
            accept_mismatch=route.policy.on_mismatch == "accept",
            resize=route.policy.resize,
        )
        run = _Run(request, route, context)
        try:
            await run.through(usable)
        except BaseException:
            await run.discard()
            raise
        if run.needed > 0:
            await run.discard()
            raise run.failure()
        result = run.merged()
        result.warnings[:0] = warnings
        return result


def _current_candidates(route: Route, today: datetime.date, warnings: list[str]) -> list[Candidate]:
    """The route's candidates with retired models replaced by their successors (a warning
    each), or left out when the policy refuses; ModelRetired when nothing is left."""
    current: list[Candidate] = []
    refused: list[str] = []
    for candidate in route.candidates:
        retirement = candidate.retirement
        if retirement is None or not retirement.in_force(today):
            current.append(candidate)
        elif retirement.successor is not None:
            warnings.append(f"{retirement.message()} Served by `{retirement.successor_model}`.")
            if retirement.successor not in current:
                current.append(retirement.successor)
        else:
            refused.append(retirement.message())
    if not current:
        raise ModelRetired(" ".join(refused), param="model")
    return current


def _usable_candidates(
    alias: str, candidates: list[Candidate], request: ImageRequest
) -> list[Candidate]:
    """The candidates whose capabilities cover the request; UnsupportedRequest naming the field
    (and what each candidate offers instead) when none do."""
    usable: list[Candidate] = []
    gaps: list[tuple[str, Gap]] = []
    for candidate in candidates:
        gap = find_gap(candidate.capabilities, request)
        if gap is None:
            usable.append(candidate)
        else:
            gaps.append((candidate.name, gap))
    if usable:
        return usable
    param = gaps[0][1].param
    if all(gap.param == param for _, gap in gaps):
        offers = "; ".join(f"{name} offers {gap.reason}" for name, gap in gaps)
        if len(gaps) == 1:
            offers = f"it offers {gaps[0][1].reason}"
        message = f"No deployment of `{alias}` supports this `{param}`: {offers}."
    else:
        offers = "; ".join(f"{name} not its `{gap.param}` ({gap.reason})" for name, gap in gaps)
        message = f"No deployment of `{alias}` can serve this request: {offers}."
    raise UnsupportedRequest(message, param=param)


class _Run:
    """The state of one client request as it moves through candidates."""

    def __init__(self, request: ImageRequest, route: Route, context: AttemptContext) -> None:
        self.request = request
        self.route = route
        self.context = context
        self.needed = request.n
        self.results: list[ImageResult] = []
        self.errors: list[UpstreamError] = []
        self.notes: list[str] = []
        self.attempts = 0  # one attempt may be several parallel calls (fan-out)
        self.tried: set[str] = set()

    @property
    def records(self) -> list[Attempt]:
        return self.context.records

    async def through(self, candidates: list[Candidate]) -> None:
        queue = list(candidates)
        skipped: list[Candidate] = []
        deferred: set[str] = set()
        while queue and self.needed > 0:
            candidate = queue.pop(0)
            if candidate.name not in deferred and self._later_has_capacity(candidate, queue):
                # This one would have to wait for quota while a later one can serve now.
                deferred.add(candidate.name)
                queue.append(candidate)
                continue
            breaker = self.context.health.breaker(candidate.name)
            if not breaker.allow():
                skipped.append(candidate)
                continue
            self.tried.add(candidate.name)
            go_on = await self._try(candidate, queue)
            if not go_on:
                return
        # The candidates whose breakers allowed them could not serve this request (or none
        # did): an open breaker's deployment still succeeds some of the time, and a last try
        # there beats giving up. The one that has recently succeeded most often goes first.
        for forced in sorted(skipped, key=self._recent_success, reverse=True):
            if self.needed == 0 or self.attempts >= MAX_ATTEMPTS or self._deadline_passed():
                return
            self.notes.append(f"{forced.name}'s circuit breaker is open; tried it as a last resort")
            self.tried.add(forced.name)
            if not await self._try(forced, []):
                return

    def _recent_success(self, candidate: Candidate) -> float:
        """The share of recent calls that succeeded: with every breaker open, the best bet."""
        for health in self.context.health.snapshot():
            if health.deployment == candidate.name and health.success_rate is not None:
                return health.success_rate
        return 0.0

    def _later_has_capacity(self, candidate: Candidate, queue: list[Candidate]) -> bool:
        pacer = self.context.pacer
        if not queue or pacer.earliest(list(candidate.slots), 1) <= 0:
            return False
        return any(pacer.earliest(list(other.slots), 1) <= 0 for other in queue)

    async def _try(self, candidate: Candidate, queue: list[Candidate]) -> bool:
        """Attempt `candidate` until it yields the images or the action says move on.

        Returns False when the request must stop here (no fall-over for this failure kind).
        """
        retries: dict[FailureKind, int] = {}  # per kind: a 503 then a 524 each get their due
        rotations = 0  # retries on another key of the pool: immediate, one per other key
        repaired = False
        policy = self.route.policy
        while self.needed > 0 and self.attempts < MAX_ATTEMPTS:
            if self._deadline_passed():
                return False
            if not self._can_finish(candidate):
                self.notes.append(
                    f"skipped {candidate.name}: its typical latency exceeds the time left"
                )
                return True
            self.attempts += 1
            outcome = await self._attempt(candidate, queue)
            if outcome.succeeded:
                continue
            error = _most_telling(outcome.errors)
            self.errors.append(error)
            if error.repair is not None and not repaired:
                repaired = True
                self.request = error.repair
                self.notes.append(
                    f"repaired the request after an image-less answer: {error.repair_note}"
                )
                continue
            sibling = policy.variants.get(candidate.name)
            if (
                error.kind in VARIANT_KINDS
                and sibling is not None
                and sibling.name not in self.tried
            ):
                self.tried.add(sibling.name)
                queue.insert(0, sibling)
                self.notes.append(f"{error.kind} on {candidate.name}: switched to {sibling.name}")
                return True
            action = decide(
                error.kind,
                retries=policy.retries.get(error.kind),
                fall_over_on_safety=policy.fall_over_on_safety,
                fall_over_on_mismatch=policy.on_mismatch != "fail",
            )
            if outcome.upstream_calls == 0:
                return action.fall_over  # the pacer found no quota in time: waiting will not help
            if action.rotate_key and rotations < len(candidate.slots) - 1:
                # The pacer has taken the failing key out (disabled or blocked): the retry
                # lands on another key of the pool, so there is nothing to wait for.
                rotations += 1
                continue
            allowed = action.retries + (0 if queue else action.retries_if_last)
            retry = retries.get(error.kind, 0)
            delay = action.delay(retry, error.retry_after)
            if retry >= allowed or not self._can_wait(delay):
                return action.fall_over
            retries[error.kind] = retry + 1
            if delay:
                await self.context.sleep(delay)
        return True

    async def _attempt(self, candidate: Candidate, queue: list[Candidate]) -> AttemptOutcome:
        hedge = self.route.policy.hedge
        backup = queue[0] if queue else None
        needed = self.needed
        if hedge is None or backup is None:
            outcome = await run_attempt(candidate, self.request, needed, self.context)
        else:
            latency = self.context.health.latency_percentile(candidate.name, hedge.percentile)
            delay = max(
                hedge.min_seconds, latency if latency is not None else hedge.initial_seconds
            )
            raced = await race(
                run_attempt(candidate, self.request, needed, self.context),
                lambda: run_attempt(backup, self.request, needed, self.context),
                delay,
                lambda o: o.succeeded,
            )
            outcome = raced.winner
            if raced.backup_started:
                queue.remove(backup)
                self.tried.add(backup.name)
                self.notes.append(
                    f"hedged: {candidate.name} ran past {delay:.1f} s, {backup.name} started"
                )
            if raced.loser is not None:
                for result in raced.loser.results:  # the losing images are not needed
                    await result.aclose()
        self.results.extend(outcome.results)
        self.needed -= outcome.images
        return outcome

    def _deadline_passed(self) -> bool:
        return self.request.deadline is not None and self.context.clock() >= self.request.deadline

    def _can_finish(self, candidate: Candidate) -> bool:
        """Whether an attempt started now is likely to end before the deadline (by its p50)."""
        if self.request.deadline is None:
            return True
        typical = self.context.health.latency_percentile(candidate.name, 50)
        return typical is None or self.context.clock() + typical < self.request.deadline

    def _can_wait(self, delay: float) -> bool:
        if self.request.deadline is None:
            return True
        # Waiting only helps if an attempt can still finish after it; keep a second for that.
        return self.context.clock() + delay + 1.0 < self.request.deadline

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
            notes=self.notes + [note for result in self.results for note in result.notes],
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
        return AllCandidatesFailed(final, attempts, self.records)

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
