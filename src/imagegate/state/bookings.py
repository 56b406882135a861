"""Ledger rows and budget counters at admission and at start-up.

admit   one transaction, only for a request that reserves against a budget or claims an
        Idempotency-Key: the idempotency check, the budget reservation (conditional UPDATE of the
        key's spend counters) and the `pending` request row. Every other request is written
        once, settled, by the journal's writer (`state/apply.py`).
abandon at start-up, after the journal was replayed: `pending` rows of a process that died
        become `abandoned` at cost 0 and release their reservations (they were never settled,
        so no answer went out for them).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from imagegate.state.models import RequestRow, SpendRow

PENDING, SUCCEEDED, FAILED, ABANDONED = "pending", "succeeded", "failed", "abandoned"


@dataclass(frozen=True, slots=True)
class Period:
    """One budget period of a key: `start` is its first UTC day, `budget` None = unlimited."""

    name: str  # day | month
    start: str
    budget_micros: int | None


@dataclass(frozen=True, slots=True)
class Reservation:
    """What admission wrote: the pending row (None: none was written) and the estimate
    reserved on the lineage's spend counters (0: nothing), which settlement must release."""

    request_pk: int | None
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


class LedgerStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def admit(
        self,
        request: dict[str, Any],
        *,
        lineage: str | None,
        periods: Sequence[Period],
        estimate_micros: int,
        idempotency_slot: str | None,
        unapplied: Mapping[tuple[str, str], int] | None = None,
    ) -> Reservation:
        """Insert the pending row and reserve `estimate_micros` on every period of `periods`
        (none: nothing is reserved, the row only holds the Idempotency-Key's slot).

        `unapplied`: spend this process has settled but not yet applied, by (period, start);
        counted as if it were booked, so the journal's lag cannot let a key pass its budget.
        Raises BudgetRefusal or AlreadyAdmitted, having written nothing.
        """
        reserved = estimate_micros if lineage is not None and periods else 0
        try:
            async with self.engine.begin() as connection:
                if idempotency_slot is not None:
                    await self._claim_slot(connection, idempotency_slot)
                if lineage is not None:
                    for period in periods:
                        where = (period.name, period.start)
                        extra = 0 if unapplied is None else unapplied.get(where, 0)
                        await self._reserve(connection, lineage, period, estimate_micros, extra)
                pk = await connection.scalar(
                    insert(RequestRow)
                    .values(
                        **request,
                        state=PENDING,
                        estimate_micros=reserved,
                        cost_micros=0,
                        images=0,
                        attempts=0,
                        idempotency_slot=idempotency_slot,
                    )
                    .returning(RequestRow.id)
                )
        except IntegrityError:
            # Another request with the same Idempotency-Key was admitted at the same moment.
            raise AlreadyAdmitted(PENDING, "(concurrent)", 0) from None
        assert pk is not None
        return Reservation(pk, lineage, tuple(periods), reserved)

    async def _claim_slot(self, connection: AsyncConnection, slot: str) -> None:
        earlier = (
            await connection.execute(
                select(
                    RequestRow.id, RequestRow.state, RequestRow.request_id, RequestRow.cost_micros
                ).where(RequestRow.idempotency_slot == slot)
            )
        ).first()
        if earlier is None:
            return
        pk, state, request_id, cost = earlier
        if state in (PENDING, SUCCEEDED):
            raise AlreadyAdmitted(state, request_id, cost)
        # it failed: the client's retry may run under the key
        await connection.execute(
            update(RequestRow).where(RequestRow.id == pk).values(idempotency_slot=None)
        )

    async def _reserve(
        self, connection: AsyncConnection, lineage: str, period: Period, estimate: int, extra: int
    ) -> None:
        await connection.execute(_insert_ignore(self.engine, lineage, period))
        where = _spend_row(lineage, period)
        if period.budget_micros is not None:
            total = SpendRow.booked_micros + SpendRow.reserved_micros + (estimate + extra)
            where = and_(where, total <= period.budget_micros)
        result = await connection.execute(
            update(SpendRow)
            .where(where)
            .values(reserved_micros=SpendRow.reserved_micros + estimate)
        )
        if result.rowcount == 0:
            row = (
                await connection.execute(
                    select(SpendRow.booked_micros, SpendRow.reserved_micros).where(
                        _spend_row(lineage, period)
                    )
                )
            ).first()
            spent = extra + (0 if row is None else row[0] + row[1])
            raise BudgetRefusal(period, spent, estimate)

    async def abandon(self, *, instance: str, older_than: datetime.datetime) -> int:
        """Mark pending rows of a dead process `abandoned` (cost 0) and release their estimates.

        Rows of `instance` (this process's name, so its previous life) go at once; rows of any
        other instance only once older than the longest a request can run (a replica that
        never came back), so a live replica's requests are never touched. Run after the
        journal was replayed: a pending row whose settlement was journaled is settled by then.
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
                if row.key_lineage is not None and row.estimate_micros:
                    for period in _periods_of(row):
                        await session.execute(
                            update(SpendRow)
                            .where(_spend_row(row.key_lineage, period))
                            .values(reserved_micros=SpendRow.reserved_micros - row.estimate_micros)
                            .execution_options(synchronize_session=False)
                        )
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
