"""What the journal and writer tests share: deployments, keys, a booking's round trip, reads."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.core.deployment import Deployment, Price
from imagegate.core.payload import HeldB64
from imagegate.core.request import ImageRequest
from imagegate.core.result import Attempt, GeneratedImage, ImageResult, Usage
from imagegate.ledger.journal import Journal
from imagegate.ledger.ledger import Booking, Ledger
from imagegate.policy import budget
from imagegate.state.bookings import LedgerStore
from imagegate.state.keys import ClientKey
from imagegate.state.models import AttemptRow, RequestRow, SpendRow

DEPLOYMENTS = {
    "cheap": Deployment("cheap", "p", "openai", "gpt-image-1-mini", "http://x", price=Price(0.01)),
    "dear": Deployment("dear", "p", "openai", "gpt-image-1.5", "http://x", price=Price(0.04)),
    # priced per token as well, so an upstream's usage re-prices its images
    "tokens": Deployment(
        "tokens",
        "p",
        "openai",
        "gpt-image-1",
        "http://x",
        price=Price(0.04, per_million_output_image_tokens=40.0),
    ),
}
BUDGETED = ClientKey(id="key_b", name="b", budget_day_micros=100_000, lineage="key_b")
UNLIMITED = ClientKey(id="key_u", name="u", lineage="key_u")


def make_ledger(
    engine: AsyncEngine,
    journal_dir: Path | None = None,
    *,
    instance: str = "host:1",
    interval: float = 0.05,
) -> Ledger:
    journal = None if journal_dir is None else Journal(journal_dir / "ledger.journal")
    return Ledger(LedgerStore(engine), DEPLOYMENTS, instance, journal, interval=interval)


async def admit(
    ledger: Ledger,
    key: ClientKey | None,
    rid: str,
    *,
    candidates: tuple[str, ...] = ("cheap", "dear"),
    idem: str | None = None,
) -> Booking:
    request = ImageRequest(prompt="p", model="img", request_id=rid, idempotency_key=idem)
    now = datetime.datetime.now(datetime.UTC)
    return await ledger.admit(
        request,
        route="img",
        key=key,
        periods=() if key is None else budget.periods(key, now),
        estimate=lambda: ledger.estimate(request, candidates),
        now=now,
    )


def served(deployment: str = "cheap", *, billed: int = 1, tokens: int = 0) -> ImageResult:
    """A result served by `deployment` after `billed - 1` billed attempts that also made one."""
    attempts = [
        Attempt(deployment, "openai", "m", None, None, 0.1, images=1, requested=1)
        for _ in range(billed)
    ]
    image = GeneratedImage("png", 1024, 1024, HeldB64.from_bytes(b"png"))
    return ImageResult(
        images=[image],
        deployment=deployment,
        provider="openai",
        model="m",
        attempts=attempts,
        usage=Usage(output_image_tokens=tokens),
    )


async def requests(engine: AsyncEngine) -> dict[str, tuple[str, int, str | None]]:
    """request_id → (state, cost, priced_by)."""
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(
                    RequestRow.request_id,
                    RequestRow.state,
                    RequestRow.cost_micros,
                    RequestRow.priced_by,
                )
            )
        ).all()
    found: dict[str, tuple[str, int, str | None]] = {}
    for rid, state, cost, priced_by in rows:
        assert rid not in found, f"{rid} is booked twice"
        found[rid] = (state, cost, priced_by)
    return found


async def attempts(engine: AsyncEngine) -> list[tuple[str, int, int]]:
    """(request_id, seq, cost) of every attempt row."""
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(AttemptRow.request_id, AttemptRow.seq, AttemptRow.cost_micros).order_by(
                    AttemptRow.request_id, AttemptRow.seq
                )
            )
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


async def spend(engine: AsyncEngine) -> dict[tuple[str, str], tuple[int, int]]:
    """(key, period) → (booked, reserved)."""
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(
                    SpendRow.key_id,
                    SpendRow.period,
                    SpendRow.booked_micros,
                    SpendRow.reserved_micros,
                )
            )
        ).all()
    return {(key, period): (booked, reserved) for key, period, booked, reserved in rows}


def snapshot(directory: Path) -> dict[str, bytes]:
    """The journal files in `directory`, to put back later (a second crash, a replay)."""
    return {
        p.name: p.read_bytes() for p in directory.glob("ledger.journal*") if ".lock" not in p.name
    }


def restore(directory: Path, files: dict[str, Any]) -> None:
    for name, data in files.items():
        (directory / name).write_bytes(data)


def rotated(directory: Path) -> list[str]:
    """The rotated journal files in `directory`: what the writer has taken but not applied."""
    return sorted(p.name for p in directory.glob("ledger.journal.*") if p.suffix != ".lock")
