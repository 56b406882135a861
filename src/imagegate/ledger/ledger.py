"""The ledger: every admitted client request and every upstream attempt, priced and booked once.

    admit        →  only for a key with a budget (or an Idempotency-Key): pending row + the
                    estimate reserved, in one transaction; otherwise nothing is written
    book_success →  succeeded, cost = Σ billed attempts at table prices   (before the first byte)
    book_failure →  failed, cost = what an upstream billed (usually 0)    (before the error)
    book_usage   →  the upstream's usage replaces the table price          (after the stream)

The three bookings are journaled (`journal.py`: one appended line, durable against a killed
process) and applied to the database in batches by `writer.py`; they return in microseconds.
`recover` at start-up replays what a crash left in the journal, then marks what is still
pending `abandoned` at cost 0: nothing was answered for it. A crash between book_success and
book_usage leaves the table price: still booked exactly once.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from imagegate.core.deployment import Deployment, Price
from imagegate.core.errors import AttemptFailure
from imagegate.core.ids import new_id
from imagegate.core.request import ImageRequest
from imagegate.core.result import Attempt, ImageResult
from imagegate.ledger.journal import Journal, read
from imagegate.ledger.pricing import (
    attempt_cost,
    billed_images,
    estimate,
    table_cost,
    usage_cost,
)
from imagegate.ledger.writer import LedgerWriter, Pending, SpendKey
from imagegate.state.apply import apply
from imagegate.state.bookings import FAILED, SUCCEEDED, LedgerStore, Period, Reservation
from imagegate.state.keys import ClientKey
from imagegate.state.usage import before_reads

log = logging.getLogger("imagegate.ledger")


@dataclass(slots=True)
class Booking:
    """One admitted request on its way through the ledger."""

    reservation: Reservation
    request: ImageRequest
    route: str
    key_id: str | None
    started: float
    row: dict[str, Any]  # the request row's admission columns, as journaled
    budgeted: bool = False  # reserved against a budget at admission
    cost_micros: int = 0
    settled: bool = False

    @property
    def ledger_id(self) -> str:
        return str(self.row["ledger_id"])


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Ledger:
    def __init__(
        self,
        store: LedgerStore,
        deployments: Mapping[str, Deployment],
        instance: str,
        journal: Journal | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        interval: float = 0.2,
    ) -> None:
        """`journal` None: bookings are held in memory only until applied (tests)."""
        self.store = store
        self.deployments = deployments
        self.instance = instance
        self.journal = journal
        self.writer = LedgerWriter(store.engine, journal, interval=interval)
        self._clock = clock
        # Every usage report of this engine in this process sees every booking made so far.
        before_reads(store.engine, self.flush)

    def price(self, deployment: str) -> Price:
        found = self.deployments.get(deployment)
        return found.price if found is not None else Price()

    def estimate(self, request: ImageRequest, deployments: Iterable[str]) -> int:
        return estimate([(self.price(name), self._max_n(name)) for name in deployments], request)

    def _max_n(self, deployment: str) -> int:
        """Images per call; 1 when the deployment does not say (the dearest assumption: the
        most calls, each carrying the input images)."""
        found = self.deployments.get(deployment)
        caps = found.capabilities if found is not None else None
        return caps.max_n if caps is not None else 1

    # -- lifetime -----------------------------------------------------------------------------

    async def recover(self, max_request_seconds: float) -> int:
        """Replay what a previous life left in the journal, then abandon what is still pending
        of it (or of a dead replica); returns how many were abandoned. Starts no writer."""
        if self.journal is not None and not self.journal.is_open:
            left = self.journal.open()
            records = [record for path in left for record in read(path)]
            applied, size = 0, self.writer.max_apply
            for start in range(0, len(records), size):
                applied += await apply(self.store.engine, records[start : start + size])
            self.journal.remove(left)
            if records:
                log.warning(
                    "replayed %d ledger record(s) from the journal of an earlier run: %d were"
                    " not yet in the database",
                    len(records),
                    applied,
                )
        older_than = utcnow() - datetime.timedelta(seconds=max_request_seconds + 60)
        return await self.store.abandon(instance=self.instance, older_than=older_than)

    def start(self) -> None:
        """Start the background writer (needs a running loop)."""
        self.writer.start()

    async def close(self) -> None:
        """Apply what is queued and release the journal."""
        await self.writer.stop()
        if self.journal is not None:
            self.journal.close()

    async def flush(self) -> None:
        """Return once every booking made so far is in the database (readers call this)."""
        await self.writer.flush()

    # -- the request path ---------------------------------------------------------------------

    async def admit(
        self,
        request: ImageRequest,
        *,
        route: str,
        key: ClientKey | None,
        periods: Sequence[Period],
        estimate: Callable[[], int],
        now: datetime.datetime,
    ) -> Booking:
        """Raises state.bookings.BudgetRefusal or AlreadyAdmitted; nothing is written then.

        Only a key with a budget reserves (and so writes its pending row now): the reservation
        is what keeps concurrent requests from overshooting it. An Idempotency-Key also writes
        the row now, to claim its slot. Every other request touches no database here.
        `estimate` (the most the request can cost, µUSD) is called only for a reservation.
        """
        if self.writer.backlogged:
            # The database has fallen far behind (down?): wait for it before spending more
            # upstream money, rather than queue bookings without bound. Raises if it is down.
            await self.writer.flush()
        key_id = None if key is None else key.id
        lineage = None if key is None else key.lineage
        slot = None
        if request.idempotency_key is not None:
            slot = f"{key_id or '-'}:{request.idempotency_key}"
        row = {
            "ledger_id": new_id(),
            "request_id": request.request_id,
            "key_id": key_id,
            "key_lineage": lineage,
            "route": route,
            "requested": request.n,
            "geometry": geometry(request),
            "quality": str(request.quality),
            "idempotency_key": request.idempotency_key,
            "instance": self.instance,
            "created_at": now,
            "day": now.date().isoformat(),
        }
        budgeted = lineage is not None and any(p.budget_micros is not None for p in periods)
        if budgeted or slot is not None:
            if slot is not None and self.writer.holds_slot(slot):
                # The slot's earlier request settled a moment ago: let the database know how.
                await self.writer.flush()
            reservation = await self.store.admit(
                row,
                lineage=lineage,
                periods=periods if budgeted else (),
                estimate_micros=estimate() if budgeted else 0,
                idempotency_slot=slot,
                unapplied=self.writer.unapplied(lineage) if budgeted and lineage else None,
            )
            reservation = Reservation(
                reservation.request_pk, lineage, tuple(periods), reservation.estimate_micros
            )
        else:
            reservation = Reservation(None, lineage, tuple(periods), 0)
        # What a settlement inserts, if admission did not: the same columns, as JSON.
        row["created_at"] = now.isoformat()
        row["estimate_micros"] = reservation.estimate_micros
        row["idempotency_slot"] = slot
        return Booking(reservation, request, route, key_id, self._clock(), row, budgeted)

    async def book_success(self, booking: Booking, result: ImageResult) -> int:
        """Settle at table prices; returns the cost booked (µUSD)."""
        rows = [self._attempt_row(booking, a) for a in result.attempts]
        cost = sum(int(row["cost_micros"]) for row in rows)
        settlement = {
            "state": SUCCEEDED,
            "cost_micros": cost,
            "outcome": "ok",
            # what the gateway changed or noticed (transcodes, resizes, a retired model)
            "diagnosis": "; ".join([*result.warnings, *result.notes])[:4000] or None,
            "deployment": result.deployment,
            "provider": result.provider,
            "model": result.model,
            "images": len(result.images),
        }
        await self._settle(booking, settlement, rows)
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
        settlement = {
            "state": FAILED,
            "cost_micros": cost,
            "outcome": outcome,
            "diagnosis": diagnosis,
            "deployment": None,
            "provider": None,
            "model": None,
            "images": 0,
        }
        await self._settle(booking, settlement, rows)
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
        record = {
            "op": "usage",
            "id": booking.ledger_id,
            "cost": booking.cost_micros,
            "attempts": sorted(per_attempt.items()),
            **self._spend_target(booking),
        }
        await self._submit(Pending(record, self._extra(booking, delta)))
        return booking.cost_micros

    async def _settle(
        self, booking: Booking, settlement: dict[str, Any], attempts: list[dict[str, Any]]
    ) -> None:
        cost = int(settlement["cost_micros"])
        row = {
            **booking.row,
            **settlement,
            "priced_by": "table",
            "latency_ms": round((self._clock() - booking.started) * 1000),
            "attempts": len(attempts),
            "settled_at": utcnow().isoformat(),
        }
        record = {
            "op": "settle",
            "id": booking.ledger_id,
            "admitted": booking.reservation.request_pk is not None,  # a pending row exists
            "row": row,
            "attempts": attempts,
            **self._spend_target(booking),
        }
        extra = self._extra(booking, cost - booking.reservation.estimate_micros)
        await self._submit(Pending(record, extra, row["idempotency_slot"]))
        booking.cost_micros = cost
        booking.settled = True

    async def _submit(self, pending: Pending) -> None:
        # Never refused for a full queue: the upstream has been paid by now, so the booking
        # must be made (admission is where a backlog holds new requests back).
        self.writer.submit(pending)

    @staticmethod
    def _spend_target(booking: Booking) -> dict[str, Any]:
        reservation = booking.reservation
        return {
            "lineage": reservation.lineage,
            "periods": [[p.name, p.start] for p in reservation.periods],
        }

    @staticmethod
    def _extra(booking: Booking, increase: int) -> tuple[tuple[SpendKey, int], ...]:
        """What this record raises a budgeted key's counters by once applied (see writer)."""
        lineage = booking.reservation.lineage
        if increase <= 0 or lineage is None or not booking.budgeted:
            return ()
        return tuple(((lineage, p.name, p.start), increase) for p in booking.reservation.periods)

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
