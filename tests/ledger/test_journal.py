"""The journal: a booking survives a crash that comes before the database has it, and replaying
the journal, once or twice, books every request exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.ledger.journal import Journal, JournalBusy, read
from imagegate.ledger.ledger import Ledger
from imagegate.state.apply import apply
from tests.ledger.common import (
    BUDGETED,
    UNLIMITED,
    admit,
    attempts,
    make_ledger,
    requests,
    restore,
    rotated,
    served,
    snapshot,
    spend,
)


def crash(ledger: Ledger) -> None:
    """What SIGKILL leaves: the queue in memory is gone; the journal's lines are in the file."""
    assert ledger.journal is not None
    ledger.journal.close()


async def _book_a_mix(ledger: Ledger) -> None:
    """Open mode, a key without a budget, a budgeted key re-priced by usage, and one in flight."""
    open_mode = await admit(ledger, None, "open")
    unlimited = await admit(ledger, UNLIMITED, "unlimited")
    budgeted = await admit(ledger, BUDGETED, "budgeted")  # reserves $0.04: a pending row
    await ledger.book_success(open_mode, served("cheap"))
    await ledger.book_failure(unlimited, outcome="unavailable", diagnosis="down")
    result = served("tokens", tokens=2000)  # the table says $0.04, the usage $0.08
    assert await ledger.book_success(budgeted, result) == 40_000
    assert await ledger.book_usage(budgeted, result) == 80_000
    # admitted, never answered: the crash comes first
    await admit(ledger, BUDGETED, "lost", candidates=("cheap",))


EXPECTED = {
    "open": ("succeeded", 10_000, "table"),
    "unlimited": ("failed", 0, "table"),
    "budgeted": ("succeeded", 80_000, "usage"),
    "lost": ("abandoned", 0, None),
}
EXPECTED_SPEND = {("key_b", "day"): (80_000, 0), ("key_b", "month"): (80_000, 0)}


async def test_a_crash_before_the_writer_ran_is_replayed_at_start_exactly_once(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    ledger = make_ledger(engine, tmp_path)
    assert await ledger.recover(300) == 0
    await _book_a_mix(ledger)
    # Only the budgeted key's admissions reached the database: their reservations.
    assert await requests(engine) == {
        "budgeted": ("pending", 0, None),
        "lost": ("pending", 0, None),
    }
    crash(ledger)

    restarted = make_ledger(engine, tmp_path)
    assert await restarted.recover(300) == 1  # "lost" is abandoned; the rest was replayed
    assert await requests(engine) == EXPECTED
    assert await spend(engine) == EXPECTED_SPEND  # booked once, every reservation released
    assert await attempts(engine) == [("budgeted", 0, 80_000), ("open", 0, 10_000)]
    assert rotated(tmp_path) == []
    await restarted.close()


async def test_replaying_an_applied_journal_again_changes_nothing(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    ledger = make_ledger(engine, tmp_path)
    await ledger.recover(300)
    await _book_a_mix(ledger)
    files = snapshot(tmp_path)
    await ledger.flush()  # applied, and the journal file deleted ...
    crash(ledger)
    restore(tmp_path, files)  # ... but the crash came before the delete reached the disk

    for _ in range(2):  # and a second crash right after the first replay
        restarted = make_ledger(engine, tmp_path)
        await restarted.recover(300)
        assert await requests(engine) == EXPECTED
        assert await spend(engine) == EXPECTED_SPEND
        assert await attempts(engine) == [("budgeted", 0, 80_000), ("open", 0, 10_000)]
        crash(restarted)
        restore(tmp_path, files)


async def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "ledger.journal")
    assert journal.open() == []
    journal.append(b'{"op":"settle","id":"a"}\n')
    journal.append(b'{"op":"settle","id":"b"')  # a power cut mid-write
    journal.close()
    assert [r["id"] for r in read(tmp_path / "ledger.journal")] == ["a"]


def test_two_processes_cannot_share_a_journal(tmp_path: Path) -> None:
    first = Journal(tmp_path / "ledger.journal")
    first.open()
    with pytest.raises(JournalBusy, match=r"its own server\.data_dir"):
        Journal(tmp_path / "ledger.journal").open()
    first.close()
    second = Journal(tmp_path / "ledger.journal")
    second.open()  # free again once the first let go (as at a process's death)
    second.close()


async def test_fsync_durability_journals_the_same_records(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    ledger = make_ledger(engine, tmp_path)
    assert ledger.journal is not None
    ledger.journal.fsync = True
    await ledger.recover(300)
    booking = await admit(ledger, None, "synced")
    await ledger.book_success(booking, served())
    assert [r["id"] for r in read(tmp_path / "ledger.journal")] == [booking.ledger_id]
    await ledger.close()
    assert await requests(engine) == {"synced": ("succeeded", 10_000, "table")}


async def test_a_replay_finishes_what_a_crash_cut_between_settling_and_repricing(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    ledger = make_ledger(engine, tmp_path)
    await ledger.recover(300)
    booking = await admit(ledger, UNLIMITED, "r", candidates=("tokens",))
    result = served("tokens", tokens=2000)
    await ledger.book_success(booking, result)
    await ledger.book_usage(booking, result)
    settle, reprice = read(tmp_path / "ledger.journal")
    assert await apply(engine, [settle]) == 1  # the settlement was applied, the re-price not
    assert await apply(engine, [settle, reprice]) == 1  # the replay: only the re-price is new
    assert await apply(engine, [settle, reprice]) == 0
    assert await requests(engine) == {"r": ("succeeded", 80_000, "usage")}
    assert await attempts(engine) == [("r", 0, 80_000)]
    assert await spend(engine) == {("key_u", "day"): (80_000, 0), ("key_u", "month"): (80_000, 0)}
    crash(ledger)
