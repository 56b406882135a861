"""Admission: everything checked before a request may spend upstream money, in this order.

route allowed for the key (403) → the key's requests/images per minute (429 with the reset) →
the model exists (404) → Idempotency-Key not already used (409) → the key's day and month budgets
hold this request's most expensive outcome (429 budget_exceeded), reserved in the same
transaction that writes the request's pending ledger row.
"""

from __future__ import annotations

import datetime
import math

from imagegate.core.errors import ClientRateLimited, DuplicateRequest, PermissionDenied
from imagegate.core.request import ImageRequest
from imagegate.ledger.ledger import Booking, Ledger, utcnow
from imagegate.ledger.pricing import format_usd
from imagegate.policy import budget
from imagegate.policy.limits import ClientLimiter, LimitHit
from imagegate.state.bookings import AlreadyAdmitted, BudgetRefusal
from imagegate.state.keys import ClientKey


class Admission:
    def __init__(self, ledger: Ledger, limiter: ClientLimiter) -> None:
        self.ledger = ledger
        self.limiter = limiter

    async def admit(
        self, request: ImageRequest, key: ClientKey | None, deployments: list[str]
    ) -> Booking:
        """The booking of an admitted request; raises the ClientError that refuses it."""
        if key is not None:
            self._check_route(key, request.model)
            hit = self.limiter.check_and_count(
                key.id, request.n, rpm=key.requests_per_minute, ipm=key.images_per_minute
            )
            if hit is not None:
                raise _rate_limited(key, hit, utcnow())
        now = utcnow()
        periods = () if key is None else budget.periods(key, now)
        try:
            return await self.ledger.admit(
                request,
                route=request.model,
                key=key,
                periods=periods,
                estimate=lambda: self.ledger.estimate(request, deployments),
                now=now,
            )
        except BudgetRefusal as exc:
            assert key is not None  # only keys have budgets
            raise budget.refusal(key, exc, now) from None
        except AlreadyAdmitted as exc:
            raise _duplicate(request, exc) from None

    @staticmethod
    def _check_route(key: ClientKey, route: str) -> None:
        if key.routes is not None and route not in key.routes:
            allowed = ", ".join(key.routes) or "none"
            raise PermissionDenied(
                f"The API key {key.name!r} may not use the model `{route}`. It may use: {allowed}.",
                param="model",
            )


def _rate_limited(key: ClientKey, hit: LimitHit, now: datetime.datetime) -> ClientRateLimited:
    wait = max(1, math.ceil(hit.retry_after))
    resets = (now + datetime.timedelta(seconds=wait)).replace(microsecond=0)
    stamp = resets.isoformat().replace("+00:00", "Z")
    if hit.asked > hit.limit:
        message = (
            f"This request asks for {hit.asked} images but key {key.name!r} is limited to"
            f" {hit.limit} {hit.limit_name}; ask for fewer images."
        )
    else:
        message = (
            f"Rate limit reached for key {key.name!r} on {hit.limit_name}: limit {hit.limit},"
            f" used {hit.used}, requested {hit.asked}. It resets in {wait} s (at {stamp})."
        )
    return ClientRateLimited(message, retry_after=wait)


def _duplicate(request: ImageRequest, exc: AlreadyAdmitted) -> DuplicateRequest:
    if exc.state == "succeeded":
        return DuplicateRequest(
            f"The Idempotency-Key {request.idempotency_key!r} was already used by request"
            f" {exc.request_id}, which succeeded and was booked at ${format_usd(exc.cost_micros)}."
            " Its images are not kept for replay: send a new Idempotency-Key to generate again.",
            param="Idempotency-Key",
        )
    return DuplicateRequest(
        f"A request with the Idempotency-Key {request.idempotency_key!r} is still running;"
        " retry once it has finished.",
        param="Idempotency-Key",
    )
