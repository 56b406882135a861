"""Usage totals from the ledger: filtered by key, route, model and time, grouped by a column.

Bookings reach the database a moment after they are made (the ledger's journal and batch
writer); `usage` first awaits whatever flush the ledger registered for its engine with
`before_reads`, so a report made in the gateway's process includes every booking made before it.
"""

from __future__ import annotations

import datetime
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.state.bookings import FAILED, PENDING, SUCCEEDED
from imagegate.state.models import RequestRow

GROUPS = {
    "day": RequestRow.day,
    "model": RequestRow.model,
    "key": RequestRow.key_id,
    "route": RequestRow.route,
}


Flush = Callable[[], Awaitable[None]]
# engine → the flushes of the ledgers writing through it (weakly: a ledger may be let go).
_flushes: weakref.WeakKeyDictionary[AsyncEngine, list[weakref.WeakMethod[Flush]]]
_flushes = weakref.WeakKeyDictionary()


def before_reads(engine: AsyncEngine, flush: Flush) -> None:
    """Have every `usage` report on `engine` await `flush` (a bound method) first."""
    live = [ref for ref in _flushes.get(engine, []) if ref() is not None]
    _flushes[engine] = [*live, weakref.WeakMethod(flush)]


async def flush_writes(engine: AsyncEngine) -> None:
    """Wait until the bookings made so far through `engine` in this process are applied."""
    for ref in _flushes.get(engine, []):
        flush = ref()
        if flush is not None:
            await flush()


@dataclass(frozen=True, slots=True)
class UsageFilter:
    key_id: str | None = None
    route: str | None = None
    model: str | None = None
    since: datetime.datetime | None = None
    until: datetime.datetime | None = None


@dataclass(frozen=True, slots=True)
class UsageLine:
    group: str | None  # None when not grouped, or the request never reached a model
    requests: int
    succeeded: int
    failed: int
    images: int
    cost_micros: int


async def usage(engine: AsyncEngine, where: UsageFilter, group_by: str | None) -> list[UsageLine]:
    """One line per group (or one line in all), ordered by group; pending requests are left out."""
    column: Any = GROUPS[group_by] if group_by is not None else None
    cost = func.coalesce(func.sum(RequestRow.cost_micros), 0)
    query = select(
        func.count().label("requests"),
        func.coalesce(func.sum(case((RequestRow.state == SUCCEEDED, 1), else_=0)), 0),
        func.coalesce(func.sum(case((RequestRow.state == FAILED, 1), else_=0)), 0),
        func.coalesce(func.sum(RequestRow.images), 0),
        cost,
    ).where(RequestRow.state != PENDING)
    if where.key_id is not None:
        query = query.where(RequestRow.key_id == where.key_id)
    if where.route is not None:
        query = query.where(RequestRow.route == where.route)
    if where.model is not None:
        query = query.where(RequestRow.model == where.model)
    if where.since is not None:
        query = query.where(RequestRow.created_at >= where.since)
    if where.until is not None:
        query = query.where(RequestRow.created_at < where.until)
    if column is not None:
        query = query.add_columns(column).group_by(column).order_by(column)
    await flush_writes(engine)
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    lines = [
        UsageLine(
            group=row[5] if column is not None else None,
            requests=int(row[0]),
            succeeded=int(row[1]),
            failed=int(row[2]),
            images=int(row[3]),
            cost_micros=int(row[4]),
        )
        for row in rows
    ]
    if column is None and lines and lines[0].requests == 0:
        return []
    return lines
