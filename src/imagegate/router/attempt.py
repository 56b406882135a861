"""One attempt: pace, call one candidate (fanned out when n exceeds what one call makes),
classify, record. Never decides what happens next — that is decide.py.

Every call is recorded, including calls the pacer refused (no upstream call was made) and calls
cancelled because a hedge won or the client left: the ledger must see every upstream call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable

from imagegate.core.deployment import calls_for
from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.request import ImageRequest
from imagegate.core.result import Attempt, ImageResult
from imagegate.output.verify import geometry_mismatch
from imagegate.router.health import HealthBoard
from imagegate.router.pacer import NoCapacity, Pacer
from imagegate.router.table import Candidate

# A 429 while the key has used less than this share of its known per-minute quota is not the
# rate limit at work: the quota is stuck (e.g. after a billing upgrade) or shared upstream.
STUCK_SHARE = 0.5
# Kinds that condemn the key, not the deployment: take it out of the pool for a while.
KEY_KINDS = {FailureKind.QUOTA_ZERO, FailureKind.AUTH, FailureKind.BILLING}


@dataclasses.dataclass(slots=True)
class AttemptContext:
    pacer: Pacer
    health: HealthBoard
    records: list[Attempt]
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # What took each disabled key out (shared by the router across requests): while a key is
    # out, a request that finds no other key is told the same thing, not "rate limited".
    key_failures: dict[str, UpstreamError] = dataclasses.field(default_factory=dict)
    # The route's answer to a wrong geometry: accept it with a note instead of failing it.
    accept_mismatch: bool = False
    resize: bool = False  # a right-aspect, wrong-size image passes: the gateway resizes it


@dataclasses.dataclass(slots=True)
class AttemptOutcome:
    results: list[ImageResult]
    errors: list[UpstreamError]
    upstream_calls: int = 0

    @property
    def images(self) -> int:
        return sum(len(result.images) for result in self.results)

    @property
    def succeeded(self) -> bool:
        return not self.errors


async def call_once(
    candidate: Candidate, request: ImageRequest, context: AttemptContext
) -> tuple[ImageResult | None, UpstreamError | None]:
    deployment = candidate.deployment
    started = context.clock()
    try:
        permit = await context.pacer.acquire(
            list(candidate.slots), request.n, _latest_start(candidate, request, context)
        )
    except NoCapacity as exc:
        return None, _paced_out(candidate, request, context, exc, started)
    key = candidate.slots[permit.slot]
    # Latency is the upstream call's alone: a wait for quota is the pacer's, and counting it
    # would inflate the percentiles that hedging and deadline margins are built on.
    started = context.clock()
    result: ImageResult | None = None
    error: UpstreamError | None = None
    try:
        result = await candidate.provider.generate(request, key)
        error = _check_result(candidate, request, result, context)
        if error is not None:
            await result.aclose()
            result = None
    except UpstreamError as exc:
        error = exc
    except asyncio.CancelledError:
        context.health.breaker(deployment.name).cancel_probe()
        _record(
            context, candidate, request, None, None, started, key_id=_key_id(key), cancelled=True
        )
        raise
    finally:
        permit.release()
    if error is not None:
        error = _learn_from(error, context, permit.slot)
        error.deployment = deployment.name
    context.health.record(
        deployment.name,
        None if error is None else error.kind,
        context.clock() - started,
        "" if error is None else error.diagnosis,
    )
    _record(context, candidate, request, result, error, started, key_id=_key_id(key))
    return result, error


CALL_MARGIN_SECONDS = 2.0


def _latest_start(
    candidate: Candidate, request: ImageRequest, context: AttemptContext
) -> float | None:
    """The last instant a call may start and still end before the deadline: a send slot the
    pacer could only grant later is refused at once, not handed out with no time to use it."""
    if request.deadline is None:
        return None
    slow = context.health.latency_percentile(candidate.name, 90)
    if slow is None:
        return request.deadline  # no history yet: the call's own timeout bounds it
    # Room for a slow call plus jitter: granting a slot with only the typical latency left
    # let calls start 10 ms before the deadline and time out (chaos benchmark, scenario 3).
    return request.deadline - max(CALL_MARGIN_SECONDS, 1.5 * slow)


def _paced_out(
    candidate: Candidate,
    request: ImageRequest,
    context: AttemptContext,
    exc: NoCapacity,
    started: float,
) -> UpstreamError:
    # No upstream call: if this was the breaker's probe, give the probe slot back.
    context.health.breaker(candidate.name).cancel_probe()
    disabled = [
        context.key_failures.get(slot)
        for slot in candidate.slots
        if context.pacer.usage(slot).disabled_reason is not None
    ]
    if disabled and len(disabled) == len(candidate.slots) and disabled[0] is not None:
        known = disabled[0]
        error = UpstreamError(
            known.kind,
            f"{known.diagnosis} (every key of {candidate.name} is out for this reason;"
            " no upstream call was made)",
            status=known.status,
            provider_code=known.provider_code,
        )
        _record(context, candidate, request, None, error, started, key_id=None, called=False)
        return error
    error = UpstreamError(
        FailureKind.RATE_LIMITED,
        f"{candidate.name} has no quota left before the deadline: {exc.reason}",
        retry_after=exc.retry_after,
    )
    _record(context, candidate, request, None, error, started, key_id=None, called=False)
    return error


def _learn_from(error: UpstreamError, context: AttemptContext, slot: str) -> UpstreamError:
    """Tell the pacer what the failure says about the key; reclassify a stuck quota."""
    if error.kind in KEY_KINDS:
        context.pacer.disable(slot, error.diagnosis)
        context.key_failures[slot] = error
    elif error.kind is FailureKind.RATE_LIMITED:
        usage = context.pacer.usage(slot)
        limit = usage.limits.images_per_minute
        if limit and usage.images_last_minute < limit * STUCK_SHARE:
            error = UpstreamError(
                FailureKind.QUOTA_STUCK,
                f"the upstream answered 429 although this key sent only {usage.images_last_minute}"
                f" of its {limit} images this minute: its quota is stuck (common for a while after"
                " a billing change) or taken by another client of the same key; trying a sibling"
                " model or another provider",
                status=error.status,
                provider_code=error.provider_code,
                provider_message=error.provider_message,
                retry_after=error.retry_after,
            )
        context.pacer.block(slot, error.retry_after if error.retry_after is not None else 2.0)
    return error


def _key_id(key: object) -> str | None:
    return getattr(key, "id", None)


def _record(
    context: AttemptContext,
    candidate: Candidate,
    request: ImageRequest,
    result: ImageResult | None,
    error: UpstreamError | None,
    started: float,
    *,
    key_id: str | None,
    called: bool = True,
    cancelled: bool = False,
) -> None:
    deployment = candidate.deployment
    context.records.append(
        Attempt(
            deployment=deployment.name,
            provider=deployment.kind,
            model=deployment.model,
            kind=None if error is None else error.kind,
            status=None if error is None else error.status,
            seconds=context.clock() - started,
            images=0 if result is None else len(result.images),
            diagnosis="cancelled: another attempt won"
            if cancelled
            else ""
            if error is None
            else error.diagnosis,
            key_id=key_id,
            upstream_called=called,
            requested=request.n,
        )
    )


async def run_attempt(
    candidate: Candidate, request: ImageRequest, needed: int, context: AttemptContext
) -> AttemptOutcome:
    """Ask `candidate` for `needed` images, in parallel calls of at most `max_n` each."""
    counts = calls_for(needed, candidate.capabilities.max_n)
    calls = [
        call_once(
            candidate,
            request if count == request.n else dataclasses.replace(request, n=count),
            context,
        )
        for count in counts
    ]
    outcome = AttemptOutcome([], [])
    before = len(context.records)
    try:
        # Each call returns its failure instead of raising, so one failed part never cancels
        # the others; the images that did arrive are kept and only the rest is asked again.
        # One call (the common case) is awaited as it is: no task to create and gather.
        answers = [await calls[0]] if len(calls) == 1 else await asyncio.gather(*calls)
        for result, error in answers:
            if result is not None:
                outcome.results.append(result)
            if error is not None:
                outcome.errors.append(error)
    except BaseException:
        for result in outcome.results:
            await result.aclose()
        raise
    outcome.upstream_calls = sum(r.upstream_called for r in context.records[before:])
    return outcome


def _check_result(
    candidate: Candidate, request: ImageRequest, result: ImageResult, context: AttemptContext
) -> UpstreamError | None:
    """Every image checked from its header against what was asked (output/verify.py)."""
    if not result.images:
        return UpstreamError(FailureKind.EMPTY, "the upstream answered without an image")
    caps = candidate.capabilities
    exact = caps.sizes is not None or caps.arbitrary_sizes
    for image in result.images:
        # With `resize`, only the aspect must hold: the gateway brings the size to the asked.
        problem = geometry_mismatch(
            request, image, exact=exact and not context.resize, tolerance=caps.aspect_tolerance
        )
        if problem is None:
            continue
        if context.accept_mismatch:
            result.notes.append(f"served despite a geometry mismatch: {problem}")
            continue
        return UpstreamError(
            FailureKind.MISMATCH,
            f"{candidate.name} returned an image of the wrong geometry: {problem}",
        )
    return None
