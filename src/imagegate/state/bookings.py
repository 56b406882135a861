"""Ledger rows and budget counters, written in the transactions that keep them consistent.

admit   one transaction: the idempotency check, the budget reservation (conditional UPDATE of the
        key's spend counters) and the `pending` request row.
settle  one transaction: the request row becomes `succeeded` or `failed` with its cost, its
        attempt rows are written, and the reservation turns into booked spend.
abandon at start-up: `pending` rows of a process that died become `abandoned` at cost 0 and
        release their reservations (they were never settled, so no 200 went out for them).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from imagegate.state.models import AttemptRow, RequestRow, SpendRow

PENDING, SUCCEEDED, FAILED, ABANDONED = "pending", "succeeded", "failed", "abandoned"


@dataclass(frozen=True, slots=True)
class Period:
    """One budget period of a key: `start` is its first UTC day, `budget` None = unlimited."""

    name: str  # day | month
    start: str
    budget_micros: int | None


@dataclass(frozen=True, slots=True)
class Reservation:
    """What admission reserved, handed back to settle (which must release exactly this)."""

    request_pk: int
    lineage: str | None
    periods: tuple[Period, ...]
    estimate_micros: int


class BudgetRefusal(Exception):
    """Booked + reserved spend + this request's estimate would pass a budget."""

    def __init__(self, period: Period, spent_micros: int, estimate_micros: int) -> None:
        super().__init__(f"{period.name} budget")
        self.period = period
        self.spent_micros = spent_micros
        self.estimate_micros = estimate_micros


class AlreadyAdmitted(Exception):
    """An Idempotency-Key already names a request that is running or has succeeded."""

    def __init__(self, state: str, request_id: str, cost_micros: int) -> None:
        super().__init__(f"idempotency key already used by {state} request {request_id}")
        self.state = state
        self.request_id = request_id
        self.cost_micros = cost_micros


@dataclass(slots=True)
class Settlement:
    state: str  # succeeded | failed
    cost_micros: int
    outcome: str | None = None
    diagnosis: str | None = None
    deployment: str | None = None
    provider: str | None = None
    model: str | None = None
    images: int = 0
    priced_by: str = "table"
    latency_ms: int | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)  # AttemptRow fields


class LedgerStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def admit(
        self,
        request: dict[str, Any],
        *,
        lineage: str | None,
        periods: Sequence[Period],
        estimate_micros: int,
        idempotency_slot: str | None,
    ) -> Reservation:
        """Insert the pending row and reserve the estimate.

        Raises BudgetRefusal or AlreadyAdmitted, having written nothing.
        """
        try:
            async with self._sessions.begin() as session:
                if idempotency_slot is not None:
                    await self._claim_slot(session, idempotency_slot)
                if lineage is not None:
                    for period in periods:
                        await self._reserve(session, lineage, period, estimate_micros)
                row = RequestRow(
                    **request,
                    state=PENDING,
                    estimate_micros=estimate_micros,
                    cost_micros=0,
                    images=0,
                    attempts=0,
                    idempotency_slot=idempotency_slot,
                )
                session.add(row)
                await session.flush()
                pk = row.id
        except IntegrityError:
            # Another request with the same Idempotency-Key was admitted at the same moment.
            raise AlreadyAdmitted(PENDING, "(concurrent)", 0) from None
        return Reservation(pk, lineage, tuple(periods), estimate_micros)

    async def _claim_slot(self, session: AsyncSession, slot: str) -> None:
        earlier = await session.scalar(
            select(RequestRow).where(RequestRow.idempotency_slot == slot)
        )
        if earlier is None:
            return
        if earlier.state in (PENDING, SUCCEEDED):
            raise AlreadyAdmitted(earlier.state, earlier.request_id, earlier.cost_micros)
        earlier.idempotency_slot = None  # it failed: the client's retry may run under the key

    async def _reserve(
        self, session: AsyncSession, lineage: str, period: Period, estimate: int
    ) -> None:
        await session.execute(_insert_ignore(self._engine, lineage, period))
        where = _spend_row(lineage, period)
        if period.budget_micros is not None:
            total = SpendRow.booked_micros + SpendRow.reserved_micros + estimate
            where = and_(where, total <= period.budget_micros)
        result = await session.execute(
            update(SpendRow)
            .where(where)
            .values(reserved_micros=SpendRow.reserved_micros + estimate)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            row = await session.scalar(select(SpendRow).where(_spend_row(lineage, period)))
            spent = 0 if row is None else row.booked_micros + row.reserved_micros
            raise BudgetRefusal(period, spent, estimate)

    async def settle(self, reservation: Reservation, settlement: Settlement) -> bool:
        """Settle a pending request. False when it was no longer pending (already abandoned)."""
        now = datetime.datetime.now(datetime.UTC)
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(RequestRow)
                .where(RequestRow.id == reservation.request_pk, RequestRow.state == PENDING)
                .values(
                    state=settlement.state,
                    cost_micros=settlement.cost_micros,
                    outcome=settlement.outcome,
                    diagnosis=settlement.diagnosis,
                    deployment=settlement.deployment,
                    provider=settlement.provider,
                    model=settlement.model,
                    images=settlement.images,
                    priced_by=settlement.priced_by,
                    latency_ms=settlement.latency_ms,
                    attempts=len(settlement.attempts),
                    settled_at=now,
                    # a failure frees the key for the client's retry; a success keeps it
                    **({} if settlement.state == SUCCEEDED else {"idempotency_slot": None}),
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                return False
            for seq, attempt in enumerate(settlement.attempts):
                session.add(
                    AttemptRow(
                        request_pk=reservation.request_pk, seq=seq, created_at=now, **attempt
                    )
                )
            await self._move_spend(session, reservation, settlement.cost_micros)
        return True

    async def reprice(
        self, reservation: Reservation, cost_micros: int, attempt_costs: dict[int, int]
    ) -> None:
        """Replace a settled request's table price by the upstream's usage-based cost."""
        async with self._sessions.begin() as session:
            row = await session.get(RequestRow, reservation.request_pk, with_for_update=True)
            if row is None or row.state != SUCCEEDED or row.priced_by == "usage":
                return
            delta = cost_micros - row.cost_micros
            row.cost_micros = cost_micros
            row.priced_by = "usage"
            for seq, cost in attempt_costs.items():
                await session.execute(
                    update(AttemptRow)
                    .where(AttemptRow.request_pk == reservation.request_pk, AttemptRow.seq == seq)
                    .values(cost_micros=cost)
                    .execution_options(synchronize_session=False)
                )
            if reservation.lineage is not None and delta:
                for period in reservation.periods:
                    await session.execute(
                        update(SpendRow)
                        .where(_spend_row(reservation.lineage, period))
                        .values(booked_micros=SpendRow.booked_micros + delta)
                        .execution_options(synchronize_session=False)
                    )

    async def _move_spend(self, session: AsyncSession, reservation: Reservation, cost: int) -> None:
        if reservation.lineage is None:
            return
        for period in reservation.periods:
            await session.execute(
                update(SpendRow)
                .where(_spend_row(reservation.lineage, period))
                .values(
                    reserved_micros=SpendRow.reserved_micros - reservation.estimate_micros,
                    booked_micros=SpendRow.booked_micros + cost,
                )
                .execution_options(synchronize_session=False)
            )

    async def abandon(self, *, instance: str, older_than: datetime.datetime) -> int:
        """Mark pending rows of a dead process `abandoned` (cost 0) and release their estimates.

        Rows of `instance` (this process's name, so its previous life) go at once; rows of any
        other instance only once older than the longest a request can run (a replica that
        never came back), so a live replica's requests are never touched.
        """
        async with self._sessions.begin() as session:
            rows = (
                await session.scalars(
                    select(RequestRow)
                    .where(
                        RequestRow.state == PENDING,
                        or_(RequestRow.instance == instance, RequestRow.created_at < older_than),
                    )
                    .with_for_update()
                )
            ).all()
            now = datetime.datetime.now(datetime.UTC)
            for row in rows:
                row.state = ABANDONED
                row.cost_micros = 0
                row.idempotency_slot = None
                row.outcome = "abandoned"
                row.diagnosis = "the gateway stopped before this request was answered"
                row.settled_at = now
                periods = _periods_of(row)
                reservation = Reservation(row.id, row.key_lineage, periods, row.estimate_micros)
                await self._move_spend(session, reservation, 0)
            return len(rows)


def _spend_row(lineage: str, period: Period) -> Any:
    return and_(
        SpendRow.key_id == lineage, SpendRow.period == period.name, SpendRow.start == period.start
    )


def _insert_ignore(engine: AsyncEngine, lineage: str, period: Period) -> Any:
    values = {
        "key_id": lineage,
        "period": period.name,
        "start": period.start,
        "booked_micros": 0,
        "reserved_micros": 0,
    }
    if engine.dialect.name == "postgresql":
        return postgresql.insert(SpendRow).values(values).on_conflict_do_nothing()
    return sqlite.insert(SpendRow).values(values).on_conflict_do_nothing()


def _periods_of(row: RequestRow) -> tuple[Period, ...]:
    day = row.day
    return (Period("day", day, None), Period("month", day[:8] + "01", None))
