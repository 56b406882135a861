"""One attempt: call one candidate (fanned out when n exceeds what one call makes), time it,
and record it. Never decides what happens next — that is decide.py."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from imagegate.core.deployment import UpstreamKey
from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.request import ImageRequest
from imagegate.core.result import Attempt, ImageResult
from imagegate.output.verify import geometry_mismatch
from imagegate.router.table import Candidate


@dataclasses.dataclass(slots=True)
class AttemptOutcome:
    results: list[ImageResult]
    errors: list[UpstreamError]
    records: list[Attempt]

    @property
    def images(self) -> int:
        return sum(len(result.images) for result in self.results)


async def call_once(
    candidate: Candidate, request: ImageRequest, key: UpstreamKey | None
) -> tuple[ImageResult | None, UpstreamError | None, Attempt]:
    deployment = candidate.deployment
    started = time.monotonic()
    result: ImageResult | None = None
    error: UpstreamError | None = None
    try:
        result = await candidate.provider.generate(request, key)
        error = _check_result(candidate, request, result)
        if error is not None:
            await result.aclose()
            result = None
    except UpstreamError as exc:
        error = exc
    if error is not None:
        error.deployment = deployment.name
    record = Attempt(
        deployment=deployment.name,
        provider=deployment.kind,
        model=deployment.model,
        kind=None if error is None else error.kind,
        status=None if error is None else error.status,
        seconds=time.monotonic() - started,
        images=0 if result is None else len(result.images),
        diagnosis="" if error is None else error.diagnosis,
    )
    return result, error, record


async def run_attempt(
    candidate: Candidate, request: ImageRequest, needed: int, key: UpstreamKey | None
) -> AttemptOutcome:
    """Ask `candidate` for `needed` images, in parallel calls of at most `max_n` each."""
    per_call = max(1, candidate.capabilities.max_n)
    counts = [min(per_call, needed - start) for start in range(0, needed, per_call)]
    calls = [call_once(candidate, dataclasses.replace(request, n=count), key) for count in counts]
    outcome = AttemptOutcome([], [], [])
    try:
        # Each call returns its failure instead of raising, so one failed part never cancels
        # the others; the images that did arrive are kept and only the rest is asked again.
        for result, error, record in await asyncio.gather(*calls):
            outcome.records.append(record)
            if result is not None:
                outcome.results.append(result)
            if error is not None:
                outcome.errors.append(error)
    except BaseException:
        for result in outcome.results:
            await result.aclose()
        raise
    return outcome


def _check_result(
    candidate: Candidate, request: ImageRequest, result: ImageResult
) -> UpstreamError | None:
    if not result.images:
        return UpstreamError(FailureKind.EMPTY, "the upstream answered without an image")
    caps = candidate.capabilities
    exact = caps.sizes is not None or caps.arbitrary_sizes
    for image in result.images:
        problem = geometry_mismatch(request, image, exact=exact)
        if problem is not None:
            return UpstreamError(
                FailureKind.MISMATCH,
                f"{candidate.name} returned an image of the wrong geometry: {problem}",
            )
    return None
