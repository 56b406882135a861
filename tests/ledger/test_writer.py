"""The batch writer: bookings cost no database work on the request path, many settlements share
one transaction, readers and budget checks see every booking, a failing database loses none."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.ledger.ledger import Ledger
from imagegate.state.apply import apply
from imagegate.state.bookings import BudgetRefusal
from imagegate.state.usage import UsageFilter, usage
from tests.ledger.common import (
    BUDGETED,
    admit,
    make_ledger,
    requests,
    rotated,
    served,
    spend,
)


def _count_commits(engine: AsyncEngine) -> list[int]:
    commits = [0]

    def counted(_: Any) -> None:
        commits[0] += 1

    event.listen(engine.sync_engine, "commit", counted)
    return commits


async def _serve(ledger: Ledger, rid: str) -> None:
    booking = await admit(ledger, None, rid)
    await asyncio.sleep(0.001 * (hash(rid) % 5))  # the upstream call
    await ledger.book_success(booking, served())


async def test_concurrent_settlements_share_a_few_transactions_and_admission_writes_none(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    ledger = make_ledger(engine, tmp_path)
    await ledger.recover(300)
    ledger.start()
    commits = _count_commits(engine)
    await admit(ledger, None, "first")
    assert commits[0] == 0  # open mode: no database work at admission

    await asyncio.gather(*[_serve(ledger, f"r{i}") for i in range(200)])
    await ledger.flush()
    assert 1 <= commits[0] <= 5, f"{commits[0]} transactions for 200 settlements"
    assert ledger.writer.stats.records == 200
    booked = await requests(engine)
    assert len(booked) == 200 and all(v == ("succeeded", 10_000, "table") for v in booked.values())
    await ledger.close()
    assert commits[0] <= 5


async def test_a_usage_report_sees_bookings_the_writer_has_not_applied_yet(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    ledger = make_ledger(engine, tmp_path, interval=60)  # the writer would wait a minute
    await ledger.recover(300)
    ledger.start()
    booking = await admit(ledger, None, "r")
    await ledger.book_success(booking, served())
    (line,) = await usage(engine, UsageFilter(), None)  # flushes first
    assert (line.requests, line.succeeded, line.cost_micros) == (1, 1, 10_000)
    await ledger.close()


async def test_unapplied_spend_counts_against_the_budget(engine: AsyncEngine) -> None:
    ledger = make_ledger(engine)  # no writer running: nothing is applied until flushed
    first = await admit(ledger, BUDGETED, "first", candidates=("dear",))  # reserves $0.04
    # A retry billed twice: $0.08 booked against the $0.04 reserved, not yet in the database.
    assert await ledger.book_success(first, served("dear", billed=2)) == 80_000
    assert await spend(engine) == {("key_b", "day"): (0, 40_000), ("key_b", "month"): (0, 40_000)}
    for applied in (False, True):
        with pytest.raises(BudgetRefusal) as refused:  # $0.08 + $0.04 > the $0.10 budget
            await admit(ledger, BUDGETED, f"dear-{applied}", candidates=("dear",))
        assert refused.value.spent_micros == 80_000  # the same figure before and after applying
        cheap = await admit(ledger, BUDGETED, f"cheap-{applied}", candidates=("cheap",))
        await ledger.book_failure(cheap, outcome="unavailable", diagnosis="down")  # frees $0.01
        await ledger.flush()
    assert await spend(engine) == {("key_b", "day"): (80_000, 0), ("key_b", "month"): (80_000, 0)}


async def test_a_failing_database_keeps_the_records_and_their_journal_until_it_recovers(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    ledger = make_ledger(engine, tmp_path)
    await ledger.recover(300)
    failures = [2]

    async def flaky(engine: AsyncEngine, records: Sequence[dict[str, Any]]) -> int:
        if failures[0]:
            failures[0] -= 1
            raise OSError("database unreachable")
        return await apply(engine, records)

    ledger.writer.apply_batch = flaky
    booking = await admit(ledger, None, "kept")
    await ledger.book_success(booking, served())
    with pytest.raises(OSError, match="unreachable"):
        await ledger.flush()
    assert rotated(tmp_path) == ["ledger.journal.1"]
    later = await admit(ledger, None, "later")
    await ledger.book_success(later, served())
    with pytest.raises(OSError):
        await ledger.flush()
    await ledger.flush()  # the database is back: both, in order, once
    assert await requests(engine) == {
        "kept": ("succeeded", 10_000, "table"),
        "later": ("succeeded", 10_000, "table"),
    }
    assert rotated(tmp_path) == []
    await ledger.close()


async def test_a_settlement_that_arrives_after_its_row_was_abandoned_is_booked_once(
    engine: AsyncEngine,
) -> None:
    ledger = make_ledger(engine, instance="a:1")
    booking = await admit(ledger, BUDGETED, "slow", candidates=("dear",))
    await ledger.book_success(booking, served("dear"))  # journaled, not yet applied
    # Another replica's start-up gives up on the pending row (as if it were too old) ...
    assert await make_ledger(engine, instance="b:1").recover(-120) == 1
    assert await spend(engine) == {("key_b", "day"): (0, 0), ("key_b", "month"): (0, 0)}
    await ledger.flush()  # ... but it was answered, so it is booked after all
    assert await requests(engine) == {"slow": ("succeeded", 40_000, "table")}
    assert await spend(engine) == {("key_b", "day"): (40_000, 0), ("key_b", "month"): (40_000, 0)}


async def test_a_backlog_holds_new_admissions_but_never_a_settlement(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    ledger = make_ledger(engine, tmp_path)
    await ledger.recover(300)
    ledger.writer.high_water = 2

    async def down(engine: AsyncEngine, records: Sequence[dict[str, Any]]) -> int:
        raise OSError("database unreachable")

    ledger.writer.apply_batch = down
    first, second = await admit(ledger, None, "a"), await admit(ledger, None, "b")
    await ledger.book_success(first, served())
    await ledger.book_success(second, served())  # paid upstream: taken, backlog or not
    with pytest.raises(OSError):
        await admit(ledger, None, "c")  # refused before any upstream spend
    ledger.writer.apply_batch = apply
    await admit(ledger, None, "c")  # the database caught up first
    assert set(await requests(engine)) == {"a", "b"}
    await ledger.close()


async def test_a_backlog_goes_to_the_database_in_few_transactions(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Under full load a transaction is slow however few records it holds (each statement's
    round trip to the database's thread waits for the busy event loop). So a cycle takes all
    that is queued, up to `max_apply` per transaction. 256 at a time, the writer fell seconds
    behind at ~800 requests/s, and admission stalled on the backlog."""
    ledger = make_ledger(engine, tmp_path)
    await ledger.recover(300)
    sizes: list[int] = []

    async def counted(engine: AsyncEngine, records: Sequence[dict[str, Any]]) -> int:
        sizes.append(len(records))
        return await apply(engine, records)

    ledger.writer.apply_batch = counted
    for i in range(1000):  # the writer is not started: all of it is queued
        await ledger.book_success(await admit(ledger, None, f"a{i}"), served())
    await ledger.flush()
    assert sizes == [1000]

    ledger.writer.max_apply = 300
    for i in range(700):
        await ledger.book_success(await admit(ledger, None, f"b{i}"), served())
    await ledger.flush()
    assert sizes == [1000, 300, 300, 100]
    booked = await requests(engine)
    assert len(booked) == 1700 and set(booked.values()) == {("succeeded", 10_000, "table")}
    await ledger.close()
