"""The ledger on both backends: reservations never overshoot a budget, settling moves them into
booked spend, a crash's pending rows are abandoned at cost 0, an Idempotency-Key books once."""

from __future__ import annotations

import asyncio
import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.core.deployment import Deployment, Price
from imagegate.core.errors import AttemptFailure, FailureKind
from imagegate.core.request import ImageRequest
from imagegate.core.result import Attempt, ImageResult
from imagegate.ledger.ledger import Ledger
from imagegate.policy import budget
from imagegate.state.bookings import AlreadyAdmitted, BudgetRefusal, LedgerStore
from imagegate.state.keys import ClientKey
from imagegate.state.models import AttemptRow, RequestRow, SpendRow

DEPLOYMENTS = {
    "cheap": Deployment("cheap", "p", "openai", "gpt-image-1-mini", "http://x", price=Price(0.01)),
    "dear": Deployment("dear", "p", "openai", "gpt-image-1.5", "http://x", price=Price(0.04)),
}
KEY = ClientKey(id="key_a", name="a", budget_day_micros=100_000, lineage="key_a")


def _ledger(engine: AsyncEngine, instance: str = "host:1") -> Ledger:
    return Ledger(LedgerStore(engine), DEPLOYMENTS, instance)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def _admit(ledger: Ledger, n: int = 1, idem: str | None = None, rid: str = "r"):  # type: ignore[no-untyped-def]
    request = ImageRequest(prompt="p", model="img", n=n, request_id=rid, idempotency_key=idem)
    now = _now()
    return await ledger.admit(
        request,
        route="img",
        key=KEY,
        periods=budget.periods(KEY, now),
        estimate=lambda: ledger.estimate(request, ["cheap", "dear"]),
        now=now,
    )


async def _spend(engine: AsyncEngine) -> dict[str, tuple[int, int]]:
    async with engine.connect() as connection:
        result = await connection.execute(
            select(SpendRow.period, SpendRow.booked_micros, SpendRow.reserved_micros)
        )
        return {period: (booked, reserved) for period, booked, reserved in result.all()}


async def test_concurrent_admissions_never_overshoot_the_budget(engine: AsyncEngine) -> None:
    ledger = _ledger(engine)
    # budget $0.10, estimate $0.04 each (the dearer candidate): exactly two fit
    outcomes = await asyncio.gather(
        *[_admit(ledger, rid=f"r{i}") for i in range(8)], return_exceptions=True
    )
    admitted = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BudgetRefusal)]
    assert len(admitted) == 2 and len(refused) == 6
    assert refused[0].period.name == "day" and refused[0].spent_micros == 80_000
    assert (await _spend(engine))["day"] == (0, 80_000)


async def test_settling_books_the_actual_cost_and_releases_the_estimate(
    engine: AsyncEngine,
) -> None:
    ledger = _ledger(engine)
    booking = await _admit(ledger)
    result = ImageResult(
        images=[],
        deployment="cheap",
        attempts=[
            Attempt(
                "dear", "openai", "gpt-image-1.5", FailureKind.UNAVAILABLE, 503, 0.2, requested=1
            ),
            Attempt(
                "cheap",
                "openai",
                "gpt-image-1-mini",
                None,
                None,
                0.3,
                images=1,
                key_id="oa:K",
                requested=1,
            ),
        ],
    )
    assert await ledger.book_success(booking, result) == 10_000
    await ledger.flush()  # bookings reach the database through the journal's writer
    assert (await _spend(engine)) == {"day": (10_000, 0), "month": (10_000, 0)}
    async with engine.connect() as connection:
        attempts = (
            await connection.execute(
                select(
                    AttemptRow.outcome, AttemptRow.cost_micros, AttemptRow.upstream_key_id
                ).order_by(AttemptRow.seq)
            )
        ).all()
        state = (await connection.execute(select(RequestRow.state, RequestRow.cost_micros))).one()
    assert [tuple(a) for a in attempts] == [("unavailable", 0, None), ("ok", 10_000, "oa:K")]
    assert tuple(state) == ("succeeded", 10_000)


async def test_a_failure_books_what_was_billed_only(engine: AsyncEngine) -> None:
    ledger = _ledger(engine)
    booking = await _admit(ledger)
    failures = [
        AttemptFailure("dear", FailureKind.UNAVAILABLE, 503, "down"),
        AttemptFailure("cheap", FailureKind.MISMATCH, None, "wrong size"),
    ]
    cost = await ledger.book_failure(booking, outcome="mismatch", diagnosis="x", attempts=failures)
    assert cost == 10_000  # the mismatched image was made and billed; the 503 was not
    await ledger.flush()
    assert (await _spend(engine))["day"] == (10_000, 0)


async def test_restart_abandons_pending_rows_and_frees_their_reservations(
    engine: AsyncEngine,
) -> None:
    crashed = _ledger(engine, "host:8080")
    await _admit(crashed, rid="lost")
    other = _ledger(engine, "other:8080")
    await _admit(other, rid="live")  # a live replica's request is left alone
    assert await _ledger(engine, "host:8080").recover(300) == 1
    async with engine.connect() as connection:
        states = dict(
            (await connection.execute(select(RequestRow.request_id, RequestRow.state))).all()
        )
    assert states == {"lost": "abandoned", "live": "pending"}
    assert (await _spend(engine))["day"] == (0, 40_000)


async def test_an_idempotency_key_admits_once_until_the_request_fails(engine: AsyncEngine) -> None:
    ledger = _ledger(engine)
    first = await _admit(ledger, idem="abc")
    with pytest.raises(AlreadyAdmitted) as running:
        await _admit(ledger, idem="abc")
    assert running.value.state == "pending"
    await ledger.book_failure(first, outcome="unavailable", diagnosis="down")
    retry = await _admit(ledger, idem="abc")  # a failed request may be retried under its key
    await ledger.book_success(
        retry,
        ImageResult(
            images=[],
            attempts=[Attempt("cheap", "openai", "m", None, None, 0.1, images=1, requested=1)],
        ),
    )
    with pytest.raises(AlreadyAdmitted) as done:
        await _admit(ledger, idem="abc")
    assert done.value.state == "succeeded" and done.value.cost_micros == 10_000
