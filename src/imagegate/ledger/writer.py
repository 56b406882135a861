"""The ledger's batch writer: journaled bookings reach the database in group commits.

`submit` (called by the ledger on the hot path) appends the record to the journal and queues it:
no database round trip, no thread hop. A background task wakes when the first record arrives,
lets more gather for `interval` seconds (or until `max_batch` are queued), rotates the journal
and applies the lot in one transaction (`state/apply.py`; up to `max_apply` records each), then
deletes the rotated file. At load that is one transaction per ~200 ms instead of two or three
per request.

Under full load a transaction takes long however few records it holds: every statement is a
round trip to the database's thread, which waits for the busy event loop (and the GIL) on its
way back. Measured at ~800 requests/s on SQLite: 256 records took 300-700 ms to apply, against
~0.03 ms per record when idle. A cycle therefore takes everything queued, up to a large
`max_apply`, so that the writer's throughput grows with its backlog. 256 at a time, it fell
behind by thousands of records, and admission stalled all requests for seconds at `high_water`.

Lag. The database trails the journal by up to `interval` plus one transaction. Readers that must
see every booking call `flush()` first (the usage report does, through `state.usage`); budget
checks instead add `unapplied()` — this process's settled-but-unapplied spend — to the counters.

Failures. If a transaction fails (database down), the records stay queued, and their journal
files stay on disk; the writer retries with a growing pause, and `flush()` raises the error.
Bookings go on being journaled meanwhile; past `high_water` records queued, `backlogged` tells
the ledger to hold new admissions until the database has caught up (settlements are always
taken: their upstream has been paid).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.ledger.journal import Journal, encode
from imagegate.state.apply import apply

log = logging.getLogger("imagegate.ledger")

SpendKey = tuple[str, str, str]  # lineage, period, start


@dataclass(slots=True)
class Pending:
    """A journaled record on its way to the database."""

    record: dict[str, Any]
    # Spend it will add to the counters once applied (only what raises them; see `unapplied`).
    extra: tuple[tuple[SpendKey, int], ...] = ()
    slot: str | None = None  # an Idempotency-Key slot it will free or confirm


@dataclass(slots=True)
class _Stats:
    transactions: int = 0
    records: int = 0
    failures: int = 0


class LedgerWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        journal: Journal | None,
        *,
        interval: float = 0.2,
        max_batch: int = 256,
        max_apply: int = 4096,
        high_water: int = 10_000,
        apply_batch: Callable[[AsyncEngine, Sequence[dict[str, Any]]], Awaitable[int]] = apply,
    ) -> None:
        self.engine = engine
        self.journal = journal
        self.interval = interval
        self.max_batch = max_batch  # queued records that start a cycle before `interval`
        self.max_apply = max_apply  # records per transaction
        self.high_water = high_water
        self.stats = _Stats()
        self.apply_batch = apply_batch  # state.apply.apply; a test may stand in for the database
        self._queue: list[Pending] = []  # journaled, not yet taken by a cycle
        self._taken: list[Pending] = []  # taken by a cycle, not yet committed (retried first)
        self._taken_files: list[Path] = []  # journal files holding exactly `_taken`
        self._extra: defaultdict[SpendKey, int] = defaultdict(int)
        self._slots: defaultdict[str, int] = defaultdict(int)
        self._lock = asyncio.Lock()  # one cycle at a time: the loop's or a flush's
        self._work = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- the hot path -------------------------------------------------------------------------

    def submit(self, pending: Pending) -> None:
        """Journal `pending.record` and queue it. Raises OSError if the journal cannot take it,
        before anything is queued: the caller must then not answer as if it were booked."""
        if self.journal is not None:
            self.journal.append(encode(pending.record))
        self._queue.append(pending)
        for key, amount in pending.extra:
            self._extra[key] += amount
        if pending.slot is not None:
            self._slots[pending.slot] += 1
        self._work.set()
        if len(self._queue) >= self.max_batch:
            self._full.set()

    def unapplied(self, lineage: str) -> dict[tuple[str, str], int]:
        """Spend of `lineage` settled by this process but not yet in the counters, by period.

        Only increases are counted (a cost above the reserved estimate, a usage re-price up):
        a decrease is left for the database to show, so the figure errs towards refusing.
        """
        return {
            (period, start): amount
            for (owner, period, start), amount in self._extra.items()
            if owner == lineage and amount
        }

    def holds_slot(self, slot: str) -> bool:
        """Whether a settlement that frees or confirms this Idempotency-Key slot is unapplied."""
        return slot in self._slots

    @property
    def backlogged(self) -> bool:
        return len(self._queue) + len(self._taken) >= self.high_water

    @property
    def queued(self) -> int:
        return len(self._queue) + len(self._taken)

    # -- lifetime -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="imagegate-ledger-writer")

    async def stop(self) -> None:
        """Stop the loop after its current cycle and apply what is left; on failure it stays in
        the journal for the next start. (Not a cancel: a transaction is never cut midway.)"""
        if self._task is not None:
            self._stopping = True
            self._work.set()
            self._full.set()
            await self._task
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.exception(
                "could not apply %d ledger record(s) at shutdown; the journal keeps them for"
                " the next start",
                self.queued,
            )

    async def flush(self) -> None:
        """Return once everything submitted before this call is in the database."""
        async with self._lock:
            await self._cycle()

    # -- the background loop ------------------------------------------------------------------

    async def _run(self) -> None:
        pause = self.interval
        while not self._stopping:
            await self._work.wait()
            if self._stopping:
                return
            if len(self._queue) < self.max_batch:
                # Group commit: let the settlements of the next `interval` join this one.
                await self._wait_full(self.interval)
            try:
                async with self._lock:
                    await self._cycle()
            except Exception:
                self.stats.failures += 1
                log.exception(
                    "applying %d ledger record(s) failed; retrying in %.1f s", self.queued, pause
                )
                await self._wait_full(pause)
                pause = min(pause * 2, 5.0)
                self._work.set()  # what failed is still to do
            else:
                pause = self.interval

    async def _wait_full(self, seconds: float) -> None:
        """Sleep up to `seconds`; a full batch or `stop` ends the wait early."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._full.wait()

    async def _cycle(self) -> None:
        """Take what is queued (with what a failed cycle left), apply it, drop its files."""
        # No await from here to `_taken`: the rotated file holds exactly the records taken.
        if self._queue:
            if self.journal is not None and self.journal.is_open:
                rotated = self.journal.rotate()
                if rotated is not None:
                    self._taken_files.append(rotated)
            self._taken += self._queue
            self._queue = []
        self._work.clear()
        self._full.clear()
        while self._taken:
            chunk = self._taken[: self.max_apply]
            await self.apply_batch(self.engine, [p.record for p in chunk])
            del self._taken[: len(chunk)]
            self._release(chunk)
            self.stats.transactions += 1
            self.stats.records += len(chunk)
        if self._taken_files and self.journal is not None:
            self.journal.remove(self._taken_files)
            self._taken_files = []

    def _release(self, applied: Iterable[Pending]) -> None:
        # After the commit, not before: in between, the spend is counted twice (in the database
        # and here), which can only refuse a request that would have fit, never admit one that
        # does not.
        for pending in applied:
            for key, amount in pending.extra:
                left = self._extra[key] - amount
                if left:
                    self._extra[key] = left
                else:
                    del self._extra[key]
            if pending.slot is not None:
                left = self._slots[pending.slot] - 1
                if left:
                    self._slots[pending.slot] = left
                else:
                    del self._slots[pending.slot]
