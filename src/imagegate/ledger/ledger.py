"""The ledger: every admitted client request and every upstream attempt, priced and booked once.

    admit        →  pending row + the estimate reserved against the key's budgets
    book_success →  succeeded, cost = Σ billed attempts at table prices   (before the first byte)
    book_failure →  failed, cost = what an upstream billed (usually 0)    (before the error)
    book_usage   →  the upstream's usage replaces the table price          (after the stream)

A crash between admit and book leaves a pending row that `recover` marks abandoned at cost 0
on the next start: nothing was sent for it. A crash between book_success and book_usage leaves
the table price: still booked exactly once.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from imagegate.core.deployment import Deployment, Price
from imagegate.core.errors import AttemptFailure
from imagegate.core.request import ImageRequest
from imagegate.core.result import Attempt, ImageResult
from imagegate.ledger.pricing import (
    attempt_cost,
    billed_images,
    estimate,
    table_cost,
    usage_cost,
)
from imagegate.state.bookings import (
    FAILED,
    SUCCEEDED,
    LedgerStore,
    Period,
    Reservation,
    Settlement,
)
from imagegate.state.keys import ClientKey


@dataclass(slots=True)
class Booking:
    """One admitted request on its way through the ledger."""

    reservation: Reservation
    request: ImageRequest
    route: str
    key_id: str | None
    started: float
    cost_micros: int = 0
    settled: bool = False


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Ledger:
    def __init__(
        self,
        store: LedgerStore,
        deployments: Mapping[str, Deployment],
        instance: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.deployments = deployments
        self.instance = instance
        self._clock = clock

    def price(self, deployment: str) -> Price:
        found = self.deployments.get(deployment)
        return found.price if found is not None else Price()

    def estimate(self, request: ImageRequest, deployments: Iterable[str]) -> int:
        return estimate([self.price(name) for name in deployments], request)

    async def admit(
        self,
        request: ImageRequest,
        *,
        route: str,
        key: ClientKey | None,
        periods: Sequence[Period],
        estimate_micros: int,
        now: datetime.datetime,
    ) -> Booking:
        """Raises state.bookings.BudgetRefusal or AlreadyAdmitted; nothing is written then."""
        key_id = None if key is None else key.id
        slot = None
        if request.idempotency_key is not None:
            slot = f"{key_id or '-'}:{request.idempotency_key}"
        row = {
            "request_id": request.request_id,
            "key_id": key_id,
            "key_lineage": None if key is None else key.lineage,
            "route": route,
            "requested": request.n,
            "geometry": geometry(request),
            "quality": str(request.quality),
            "idempotency_key": request.idempotency_key,
            "instance": self.instance,
            "created_at": now,
            "day": now.date().isoformat(),
        }
        reservation = await self.store.admit(
            row,
            lineage=None if key is None else key.lineage,
            periods=periods,
            estimate_micros=estimate_micros,
            idempotency_slot=slot,
        )
        return Booking(reservation, request, route, key_id, self._clock())

    async def book_success(self, booking: Booking, result: ImageResult) -> int:
        """Settle at table prices; returns the cost booked (µUSD)."""
        rows = [self._attempt_row(booking, a) for a in result.attempts]
        cost = sum(int(row["cost_micros"]) for row in rows)
        await self._settle(
            booking,
            Settlement(
                state=SUCCEEDED,
                cost_micros=cost,
                outcome="ok",
                deployment=result.deployment,
                provider=result.provider,
                model=result.model,
                images=len(result.images),
                attempts=rows,
            ),
        )
        return cost

    async def book_failure(
        self,
        booking: Booking,
        *,
        outcome: str,
        diagnosis: str,
        attempts: Sequence[Attempt | AttemptFailure] = (),
    ) -> int:
        """Settle a request that delivered no image; returns what upstreams billed (µUSD)."""
        rows = [self._attempt_row(booking, self._as_attempt(a, booking)) for a in attempts]
        cost = sum(int(row["cost_micros"]) for row in rows)
        await self._settle(
            booking,
            Settlement(
                state=FAILED, cost_micros=cost, outcome=outcome, diagnosis=diagnosis, attempts=rows
            ),
        )
        return cost

    async def book_usage(self, booking: Booking, result: ImageResult) -> int:
        """After the images were read: re-price by the upstreams' own usage where they gave it."""
        if not booking.settled:
            return booking.cost_micros
        parts = result.parts or [result]
        delta = 0
        per_attempt: dict[int, int] = {}
        matched: set[int] = set()
        for part in parts:
            price = self.price(part.deployment)
            by_usage = usage_cost(price, part.usage)
            if by_usage is None:
                continue
            by_table = table_cost(price, booking.request, len(part.images))
            delta += by_usage - by_table
            seq = _attempt_of(result.attempts, part, matched)
            if seq is not None:
                matched.add(seq)
                per_attempt[seq] = by_usage
        if not per_attempt and not delta:
            return booking.cost_micros
        booking.cost_micros += delta
        await self.store.reprice(booking.reservation, booking.cost_micros, per_attempt)
        return booking.cost_micros

    async def recover(self, max_request_seconds: float) -> int:
        """Abandon what a previous life of this instance (or a dead replica) left pending."""
        older_than = utcnow() - datetime.timedelta(seconds=max_request_seconds + 60)
        return await self.store.abandon(instance=self.instance, older_than=older_than)

    async def _settle(self, booking: Booking, settlement: Settlement) -> None:
        settlement.latency_ms = round((self._clock() - booking.started) * 1000)
        settlement.priced_by = "table"
        await self.store.settle(booking.reservation, settlement)
        booking.cost_micros = settlement.cost_micros
        booking.settled = True

    def _as_attempt(self, attempt: Attempt | AttemptFailure, booking: Booking) -> Attempt:
        if isinstance(attempt, Attempt):
            return attempt
        # A failure carries only deployment, kind, status and diagnosis (see the report on the
        # router hook): the rest comes from the deployment table.
        deployment = self.deployments.get(attempt.deployment)
        return Attempt(
            deployment=attempt.deployment,
            provider=deployment.kind if deployment is not None else "",
            model=deployment.model if deployment is not None else "",
            kind=attempt.kind,
            status=attempt.status,
            seconds=0.0,
            diagnosis=attempt.diagnosis,
            requested=booking.request.n,
        )

    def _attempt_row(self, booking: Booking, attempt: Attempt) -> dict[str, Any]:
        request = booking.request
        return {
            "request_id": request.request_id,
            "idempotency_key": request.idempotency_key,
            "route": booking.route,
            "deployment": attempt.deployment,
            "provider": attempt.provider,
            "model": attempt.model,
            "upstream_key_id": attempt.key_id,
            "client_key_id": booking.key_id,
            "requested": attempt.requested,
            "images": billed_images(attempt),
            "geometry": geometry(request),
            "outcome": "ok" if attempt.kind is None else str(attempt.kind),
            "status": attempt.status,
            "diagnosis": attempt.diagnosis or None,
            "upstream_called": attempt.upstream_called,
            "latency_ms": round(attempt.seconds * 1000),
            "cost_micros": attempt_cost(self.price(attempt.deployment), request, attempt),
        }


def geometry(request: ImageRequest) -> str | None:
    if request.size is not None:
        return str(request.size)
    if request.aspect_ratio is not None or request.resolution is not None:
        return f"{request.aspect_ratio or 'auto'}@{request.resolution or 'auto'}"
    return None


def _attempt_of(attempts: Sequence[Attempt], part: ImageResult, taken: set[int]) -> int | None:
    """The attempt record that produced `part`: same deployment, same image count, in order."""
    for seq, attempt in enumerate(attempts):
        if (
            seq not in taken
            and attempt.kind is None
            and attempt.deployment == part.deployment
            and attempt.images == len(part.images)
        ):
            return seq
    return None
