"""Active probes: a minimal image request per deployment, now and then, off unless configured.

A probe goes through the same attempt as a client request (pacer, breaker, health), so a
broken deployment is taken out before a client meets it, and an open breaker is closed by a
successful probe instead of by an unlucky client. Probes are real, billed calls: each
deployment's probe settings cap how many run per day and what they may cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable

from imagegate.core.deployment import Capabilities, Deployment
from imagegate.core.geometry import Size, parse_size
from imagegate.core.request import ImageRequest, Quality
from imagegate.router.attempt import AttemptContext, call_once
from imagegate.router.breaker import BreakerState
from imagegate.router.health import HealthBoard
from imagegate.router.pacer import Pacer
from imagegate.router.table import Candidate

log = logging.getLogger("imagegate.probe")

PROBE_PROMPT = "a small red circle on white"
PROBE_SECONDS = 60.0
DAY = 86_400.0


def minimal_request(caps: Capabilities, deployment: Deployment, client_id: str) -> ImageRequest:
    """The cheapest request the deployment can serve: its smallest geometry, low quality."""
    base = ImageRequest(
        prompt=PROBE_PROMPT,
        model=deployment.name,  # not a route: probes call the deployment directly
        n=1,
        quality=Quality.LOW if "low" in caps.qualities else Quality.AUTO,
        client_id=client_id,
        request_id=client_id,
    )
    if caps.sizes:
        sizes = [size for size in map(parse_size, caps.sizes) if size is not None]
        return dataclasses.replace(base, size=min(sizes, key=lambda s: s.width * s.height))
    if caps.resolutions and "512" in caps.resolutions:
        return dataclasses.replace(base, resolution="512")
    if caps.arbitrary_sizes:
        # Unset, an arbitrary-size model picks "auto", which may be a larger, dearer image.
        return dataclasses.replace(base, size=Size(1024, 1024))
    return base


@dataclasses.dataclass(frozen=True, slots=True)
class ProbePlan:
    candidate: Candidate
    interval: float
    max_per_day: int  # the lower of the count cap and the USD cap at the per-image price


def plan_for(
    candidate: Candidate, interval: float, max_per_day: int, max_usd: float | None
) -> ProbePlan:
    price = candidate.deployment.price.per_image
    if max_usd is not None and price > 0:
        max_per_day = min(max_per_day, int(max_usd / price))
    return ProbePlan(candidate, interval, max_per_day)


class Prober:
    def __init__(
        self,
        plans: list[ProbePlan],
        pacer: Pacer,
        health: HealthBoard,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plans = plans
        self.pacer = pacer
        self.health = health
        self.clock = clock
        self._sent: dict[str, deque[float]] = {p.candidate.name: deque() for p in plans}

    async def run(self) -> None:
        """Probe every planned deployment on its interval, for as long as the task lives."""
        async with asyncio.TaskGroup() as group:
            for plan in self.plans:
                group.create_task(self._loop(plan), name=f"probe-{plan.candidate.name}")

    async def _loop(self, plan: ProbePlan) -> None:
        while True:
            await self.probe_once(plan)
            await asyncio.sleep(plan.interval)

    async def probe_once(self, plan: ProbePlan) -> bool | None:
        """Probe now if breaker and budget allow: True/False is the outcome, None = not sent."""
        name = plan.candidate.name
        if not self._within_budget(plan):
            return None
        breaker = self.health.breaker(name)
        if breaker.state is BreakerState.HALF_OPEN or not breaker.allow():
            return None  # a probe is already out, or the cooldown has not passed
        self._sent[name].append(self.clock())
        request = dataclasses.replace(
            minimal_request(plan.candidate.capabilities, plan.candidate.deployment, "probe"),
            deadline=self.clock() + PROBE_SECONDS,
        )
        context = AttemptContext(self.pacer, self.health, [], self.clock)
        result, error = await call_once(plan.candidate, request, context)
        if result is not None:
            with contextlib.suppress(Exception):
                for image in result.images:  # read it all: a probe that breaks off has failed
                    await image.source.read()
            await result.aclose()
        if error is not None:
            log.warning("probe of %s failed: %s: %s", name, error.kind, error.diagnosis)
        return error is None

    def _within_budget(self, plan: ProbePlan) -> bool:
        sent = self._sent[plan.candidate.name]
        while sent and sent[0] <= self.clock() - DAY:
            sent.popleft()
        return len(sent) < plan.max_per_day
