"""The pacer: keeps every upstream key under its quota ahead of time, instead of earning 429s.

A *slot* is one upstream key on one deployment (`"{deployment}/{key id}"`): upstream quotas are
per key and model. Each slot is registered with its `Limits`: images and requests per minute,
requests per day, concurrent calls; None means unlimited.

How a request is paced (`MemoryPacer.acquire`):

- **Rolling windows.** 60 s for images and requests per minute, 86 400 s for requests per day.
  A send is counted when its permit is granted; n=4 counts 4 images. The day window keeps one
  entry per minute, stamped at the end of that minute: a send is counted up to 60 s too long,
  never too short, and a slot holds at most 1 440 day entries.
- **Reservations.** A request that has to wait records its send at the future instant it will
  be made, then sleeps until then. Later requests see the reservation, which gives two things:
  the instant capacity comes is known exactly, so a request that cannot be served before its
  deadline is rejected at once with a true retry-after; and on one slot sends go out in the
  order they were asked for, so a later small request can never slip in before an earlier large
  one (FIFO). Across slots a later request may be served first, on a slot the earlier one could
  not use sooner: that costs the earlier request nothing.
- **Concurrency.** A request takes its concurrency unit *before* it reserves, and holds it while
  it sleeps, so the call starts exactly at the reserved instant. (A call that started later than
  counted would leave the window early and let the next one through too soon.) When a unit comes
  free cannot be known, so a request that needs one waits for a release, bounded by its
  deadline: that is the one case rejected at the deadline rather than at once. A released unit
  is handed straight to the oldest request waiting for it, so none is overtaken.
- **Failures.** `block` honours an upstream's retry-after; `disable` takes a key out for a while
  after quota_zero, auth or billing failures. Either landing while a request sleeps on that slot
  sends the request back to planning when it wakes (its reservation is dropped).
- **Refunds.** Only for a call that provably never reached the upstream; see `refund`.

Several replicas (DESIGN.md: Redis for limiter state) — a `RedisPacer` implementing `Pacer`:

- windows → one sorted set per slot and window (`pace:{slot}:ipm`, `…:rpm`, `…:rpd`), score =
  send instant on the Redis server's clock (replicas' monotonic clocks do not agree), member =
  a unique send id with its image count; `ZREMRANGEBYSCORE` prunes, a future score is a
  reservation exactly as here. The check-and-record is one Lua script, so two replicas can never
  both take the last image of a minute.
- concurrency → a sorted set of permit ids scored by a lease expiry, so a crashed replica's units
  come back; block / disable → keys with a TTL (the disable reason as the value).
- waiting stays local: each replica queues its own requests; fairness is per replica.
- the `Pacer` methods other than `acquire` are synchronous because the router calls them in its
  classify path; a Redis backend either serves them from a local mirror refreshed by each
  script's reply, or they become async (a mechanical change in the callers).
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from imagegate.core.deployment import Limits
from imagegate.core.errors import ImagegateError

MINUTE = 60.0
# Upstreams count a call when it arrives; the pacer counts it when it grants the send. Keeping
# each send in the per-minute windows a little longer than a minute absorbs connection set-up
# and clock jitter: without it, a send granted exactly 60 s after an earlier one can arrive
# inside the upstream's window and earn a 429 (seen in the chaos benchmark at the window edge).
WINDOW_MARGIN = 1.0
DAY = 86_400.0
DAY_GRAIN = 60.0  # the day window counts per minute: bounded memory, errs on the safe side
DISABLE_SECONDS = 600.0
# When a concurrency unit comes free cannot be known; image calls take seconds, so a client
# told to retry a second later has a fair chance.
BUSY_RETRY_AFTER = 1.0


class NoCapacity(ImagegateError):
    """No slot can take the request before its deadline.

    `retry_after` is the number of seconds until one could (math.inf: never, e.g. more images
    than any key's images/minute); `reason` says which limits hold, in plain words.
    """

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(f"{reason} (retry after {retry_after:.1f} s)")
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class SlotUsage:
    """What one slot has sent, as counted against its limits (reservations not included)."""

    images_last_minute: int
    requests_last_minute: int
    requests_last_day: int
    in_flight: int  # calls under way
    waiting: int  # requests holding a reservation on this slot, not yet sent
    limits: Limits
    disabled_reason: str | None  # set while the key is disabled
    blocked_for: float  # seconds until the slot may be picked again (block or disable); 0 = now


class Permit:
    """Leave to make one call on `slot`: the send is counted and one concurrency unit is held.

    Release it when the call is over (`release()`, or use it as an async context manager);
    releasing twice is harmless. `waited` is how long the request waited for capacity.
    `receipt` is what the pacer counted, opaque to everyone else (see `Pacer.refund`).
    """

    __slots__ = ("_on_release", "images", "receipt", "slot", "waited")

    def __init__(
        self,
        slot: str,
        images: int,
        waited: float,
        receipt: object,
        on_release: Callable[[], None],
    ) -> None:
        self.slot = slot
        self.images = images
        self.waited = waited
        self.receipt = receipt
        self._on_release: Callable[[], None] | None = on_release

    def release(self) -> None:
        on_release, self._on_release = self._on_release, None
        if on_release is not None:
            on_release()

    async def __aenter__(self) -> Permit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class Pacer(Protocol):
    """Keeps upstream keys under their quotas. `MemoryPacer` for one process; a Redis-backed one
    for several replicas will implement the same methods (see the module docstring)."""

    def register(self, slot: str, limits: Limits) -> None: ...

    async def acquire(self, slots: Sequence[str], images: int, deadline: float | None) -> Permit:
        """A permit to send one request of `images` images on one of `slots`, by `deadline`.

        Raises NoCapacity (see `MemoryPacer.acquire` for exactly when)."""
        ...

    def earliest(self, slots: Sequence[str], images: int) -> float:
        """Seconds until one of `slots` could send `images` (0: now, math.inf: never)."""
        ...

    def usage(self, slot: str) -> SlotUsage: ...

    def block(self, slot: str, seconds: float) -> None:
        """The upstream said "retry after `seconds`": the slot is not used until then."""
        ...

    def disable(self, slot: str, reason: str, seconds: float = DISABLE_SECONDS) -> None:
        """The key failed in a way retrying cannot fix (quota_zero, auth, billing)."""
        ...

    def refund(self, permit: Permit) -> None:
        """Uncount `permit`'s send: only for a call that provably never reached the upstream."""
        ...


# --- the windows -------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Entry:
    time: float  # the amount counts against the window until time + span
    amount: int


class _Window:
    """Amounts sent in a rolling span, oldest first, including sends reserved for later.

    Entries are appended in time order only; the pacer guarantees it by never reserving a send
    before the slot's newest one.
    """

    __slots__ = ("_entries", "grain", "span", "total")

    def __init__(self, span: float, grain: float = 0.0) -> None:
        self.span = span
        self.grain = grain
        self.total = 0
        self._entries: deque[_Entry] = deque()

    @property
    def newest(self) -> float:
        return self._entries[-1].time if self._entries else -math.inf

    def prune(self, now: float) -> None:
        entries = self._entries
        while entries and entries[0].time + self.span <= now:
            self.total -= entries.popleft().amount

    def add(self, at: float, amount: int) -> _Entry:
        # A coarse grain stamps a send at the end of its grain: counted a little long, never
        # too short, so the window can only err on the safe side.
        stamp = at if not self.grain else (math.floor(at / self.grain) + 1) * self.grain
        self.total += amount
        if self._entries and self._entries[-1].time == stamp:
            entry = self._entries[-1]
            entry.amount += amount
        else:
            entry = _Entry(stamp, amount)
            self._entries.append(entry)
        return entry

    def remove(self, entry: _Entry, amount: int, now: float) -> None:
        self.prune(now)
        if entry.time + self.span <= now:
            return  # it has left the window already: nothing is held any more
        entry.amount -= amount
        self.total -= amount
        if entry.amount == 0:
            self._entries.remove(entry)

    def earliest(self, start: float, amount: int, limit: int | None) -> float:
        """The first instant from `start` at which `amount` more fits under `limit`."""
        if limit is None:
            return start
        if amount > limit:
            return math.inf
        excess = self.total + amount - limit
        if excess <= 0:
            return start
        for entry in self._entries:
            excess -= entry.amount
            if excess <= 0:
                return max(start, entry.time + self.span)
        return math.inf  # not reached: with every entry gone, amount <= limit fits


# --- one slot ----------------------------------------------------------------------------------


class _Bound(enum.Enum):
    """What decides when a slot can send next."""

    NOTHING = enum.auto()
    QUEUE = enum.auto()
    BLOCK = enum.auto()
    DISABLED = enum.auto()
    CONCURRENCY = enum.auto()
    IMAGES_PER_MINUTE = enum.auto()
    REQUESTS_PER_MINUTE = enum.auto()
    REQUESTS_PER_DAY = enum.auto()


# What each of `_Slot._instants` stands for (the first: QUEUE, or NOTHING when it is now).
_LIMITS = (
    _Bound.QUEUE,
    _Bound.BLOCK,
    _Bound.CONCURRENCY,
    _Bound.IMAGES_PER_MINUTE,
    _Bound.REQUESTS_PER_MINUTE,
    _Bound.REQUESTS_PER_DAY,
    _Bound.DISABLED,
)


@dataclass(frozen=True, slots=True)
class _Sent:
    """What one permit counted, so that it can be uncounted."""

    images: _Entry
    requests: _Entry
    daily: _Entry
    count: int  # images


class _Slot:
    __slots__ = (
        "blocked_until",
        "daily",
        "disabled_reason",
        "disabled_until",
        "images",
        "in_flight",
        "limits",
        "name",
        "requests",
        "waiting",
        "waiting_images",
    )

    def __init__(self, name: str, limits: Limits, margin: float = WINDOW_MARGIN) -> None:
        self.name = name
        self.limits = limits
        self.images = _Window(MINUTE + margin)
        self.requests = _Window(MINUTE + margin)
        self.daily = _Window(DAY, DAY_GRAIN)
        self.in_flight = 0  # units taken, including those of requests sleeping on a reservation
        self.waiting = 0  # reservations not yet reached
        self.waiting_images = 0
        self.blocked_until = -math.inf
        self.disabled_until = -math.inf
        self.disabled_reason = ""

    def prune(self, now: float) -> None:
        self.images.prune(now)
        self.requests.prune(now)
        self.daily.prune(now)

    def unit_free(self) -> bool:
        cap = self.limits.concurrency
        return cap is None or self.in_flight < cap

    def usable(self, now: float) -> bool:
        return self.blocked_until <= now and self.disabled_until <= now

    def headroom(self) -> float:
        ipm = self.limits.images_per_minute
        return math.inf if ipm is None else ipm - self.images.total

    def _instants(self, images: int, now: float) -> tuple[float, ...]:
        """The first instant each limit allows the send, in `_LIMITS` order (disable last)."""
        self.prune(now)
        limits = self.limits
        # Never before the newest send or reservation: the windows stay in time order, which
        # prune() and earliest() rely on. Counting reservations mostly ensures this already,
        # but not once a waiter between two others was cancelled or a send refunded.
        start = max(now, self.requests.newest)
        return (
            start,
            self.blocked_until,
            math.inf if limits.concurrency == 0 else start,
            self.images.earliest(start, images, limits.images_per_minute),
            self.requests.earliest(start, 1, limits.requests_per_minute),
            self.daily.earliest(start, 1, limits.requests_per_day),
            self.disabled_until,
        )

    def bound(self, images: int, now: float) -> tuple[float, _Bound]:
        """When this slot can send `images` next (math.inf: never), and which limit says so."""
        instants = self._instants(images, now)
        first = _Bound.NOTHING if instants[0] == now else _Bound.QUEUE
        # The disable is last, so that one ending just as another limit frees does not read as
        # never: max() keeps the first of equal instants.
        return max(zip(instants, (first, *_LIMITS[1:]), strict=True), key=lambda wait: wait[0])

    def ready_at(self, images: int, now: float) -> float:
        """`bound`'s instant without its reason (asked on every acquire, so kept lean).

        A disabled key is not waited for: its failure (auth, billing) outlasts any deadline.
        """
        *others, disabled_until = self._instants(images, now)
        at = max(others)
        return math.inf if disabled_until > at else at

    def record(self, at: float, images: int) -> _Sent:
        return _Sent(
            self.images.add(at, images), self.requests.add(at, 1), self.daily.add(at, 1), images
        )

    def unrecord(self, sent: _Sent, now: float) -> None:
        self.images.remove(sent.images, sent.count, now)
        self.requests.remove(sent.requests, 1, now)
        self.daily.remove(sent.daily, 1, now)

    def describe(self, images: int, now: float) -> str:
        at, bound = self.bound(images, now)
        limits = self.limits
        room = f"room in {at - now:.0f} s"
        match bound:
            case _Bound.DISABLED:
                return f"{self.name} is disabled: {self.disabled_reason}"
            case _Bound.BLOCK:
                return f"{self.name} was told by its upstream to wait {at - now:.0f} s"
            case _Bound.QUEUE | _Bound.NOTHING:
                return f"{self.name} has earlier requests queued ({room})"
            case _Bound.CONCURRENCY:
                return f"{self.name} allows no concurrent calls"
            case _Bound.IMAGES_PER_MINUTE if at == math.inf:
                ipm = limits.images_per_minute
                return f"{self.name} allows {ipm} images/minute, fewer than the {images} asked"
            case _Bound.IMAGES_PER_MINUTE:
                return f"{self.name} is at its {limits.images_per_minute} images/minute ({room})"
            case _Bound.REQUESTS_PER_MINUTE:
                return (
                    f"{self.name} is at its {limits.requests_per_minute} requests/minute ({room})"
                )
            case _Bound.REQUESTS_PER_DAY:
                return f"{self.name} is at its {limits.requests_per_day} requests/day ({room})"


# --- the in-memory pacer -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Take:
    """Take a free unit on `slot` now; the send goes out at `at`."""

    slot: _Slot
    at: float


@dataclass(frozen=True, slots=True)
class _AwaitUnit:
    """Every slot that could send in time is busy: wait for one of them to release a unit."""

    slots: tuple[_Slot, ...]


@dataclass(eq=False, slots=True)
class _UnitWaiter:
    slots: frozenset[_Slot]
    granted: asyncio.Future[_Slot]  # resolved with the slot whose unit was handed over


class MemoryPacer:
    """The pacer of one process (DESIGN.md: limiter state in memory by default).

    `clock` and `sleep` are the pacer's time: tests pass a fake pair instead of waiting.
    Deadlines are instants on `clock`.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_waiters: int = 256,
        window_margin: float = WINDOW_MARGIN,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._max_waiters = max_waiters
        self._window_margin = window_margin
        self._slots: dict[str, _Slot] = {}
        self._unit_waiters: deque[_UnitWaiter] = deque()
        self._waiting = 0  # requests waiting in any way; bounded by max_waiters

    def register(self, slot: str, limits: Limits) -> None:
        """Add a slot, or give it new limits (a config reload keeps what was counted)."""
        known = self._slots.get(slot)
        if known is None:
            self._slots[slot] = _Slot(slot, limits, self._window_margin)
        else:
            known.limits = limits

    async def acquire(self, slots: Sequence[str], images: int, deadline: float | None) -> Permit:
        """A permit to send one request of `images` images on one of `slots`.

        Picks the slot that can send soonest; among those ready at once the one with the most
        images/minute headroom, then the first in `slots`. `deadline` is an instant on this
        pacer's clock; None waits as long as it takes.

        Raises NoCapacity at once when no slot can send before the deadline, or when
        `max_waiters` requests are already waiting; and at the deadline when the slots that
        could send in time were all busy with their concurrent calls. Raises KeyError for an
        unregistered slot. Cancelled while waiting, it leaves no trace: nothing stays counted
        and no unit stays taken.
        """
        chosen = [self._slot(name) for name in slots]
        if not chosen or images < 1:
            raise ValueError(
                f"acquire() needs a slot and at least one image, got {slots!r}, {images}"
            )
        started = self._clock()
        queued = False
        try:
            while True:
                now = self._clock()
                step = self._next_step(chosen, images, deadline, now)
                if not queued and (isinstance(step, _AwaitUnit) or step.at > now):
                    self._join_queue(step, now)
                    queued = True
                held = await self._hold_unit(step, deadline)
                permit = await self._send_on(held, images, deadline, started)
                if permit is not None:
                    return permit
        finally:
            if queued:
                self._waiting -= 1

    def earliest(self, slots: Sequence[str], images: int) -> float:
        """Seconds until one of `slots` could send `images`: 0 now, math.inf never.

        Concurrency is left out (when a unit frees cannot be known); queued reservations and
        blocks are in. No side effects.
        """
        now = self._clock()
        soonest = min((self._slot(name).ready_at(images, now) for name in slots), default=math.inf)
        return max(0.0, soonest - now)

    def usage(self, slot: str) -> SlotUsage:
        state = self._slot(slot)
        now = self._clock()
        state.prune(now)
        disabled = state.disabled_until > now
        return SlotUsage(
            images_last_minute=state.images.total - state.waiting_images,
            requests_last_minute=state.requests.total - state.waiting,
            requests_last_day=state.daily.total - state.waiting,
            in_flight=state.in_flight - state.waiting,
            waiting=state.waiting,
            limits=state.limits,
            disabled_reason=state.disabled_reason if disabled else None,
            blocked_for=max(0.0, state.blocked_until - now, state.disabled_until - now),
        )

    def block(self, slot: str, seconds: float) -> None:
        """The upstream said "retry after `seconds`": `slot` sends nothing until then.

        A shorter hint never shortens a longer block already in force."""
        state = self._slot(slot)
        state.blocked_until = max(state.blocked_until, self._clock() + seconds)

    def disable(self, slot: str, reason: str, seconds: float = DISABLE_SECONDS) -> None:
        """The key failed in a way retrying cannot fix (quota_zero, auth, billing): `slot` is
        not picked for `seconds`, and `usage(slot).disabled_reason` says why."""
        state = self._slot(slot)
        state.disabled_until = max(state.disabled_until, self._clock() + seconds)
        state.disabled_reason = reason

    def refund(self, permit: Permit) -> None:
        """Uncount `permit`'s send (its request and all its images); calling twice is harmless.

        Only for a call that provably never reached the upstream: DNS failure, connection
        refused. Never after a timeout, a reset mid-request or any HTTP answer (a 429 or 5xx
        included): the upstream may have counted that call, and counting less than the upstream
        does is exactly what earns 429s. Waiting requests keep their reserved instants; the
        room given back serves requests that arrive after them.
        """
        sent = permit.receipt
        if not isinstance(sent, _Sent):
            return  # refunded already, or not a permit of this pacer
        permit.receipt = None
        self._slot(permit.slot).unrecord(sent, self._clock())

    # --- acquire's steps -----------------------------------------------------------------------

    def _slot(self, name: str) -> _Slot:
        try:
            return self._slots[name]
        except KeyError:
            raise KeyError(f"pacer slot {name!r} was never registered") from None

    def _next_step(
        self, slots: list[_Slot], images: int, deadline: float | None, now: float
    ) -> _Take | _AwaitUnit:
        """Where to send, or what to wait for; raises NoCapacity when nothing comes in time."""
        timely = [
            (at, index, slot)
            for index, slot in enumerate(slots)
            if _in_time(at := slot.ready_at(images, now), deadline)
        ]
        if not timely:
            raise _too_late(slots, images, deadline, now)
        free = [
            (at, -slot.headroom(), index, slot) for at, index, slot in timely if slot.unit_free()
        ]
        if free:
            at, _, _, slot = min(free, key=lambda option: option[:3])
            return _Take(slot, at)
        return _AwaitUnit(tuple(slot for _, _, slot in timely))

    def _join_queue(self, step: _Take | _AwaitUnit, now: float) -> None:
        if self._waiting >= self._max_waiters:
            retry_after = BUSY_RETRY_AFTER if isinstance(step, _AwaitUnit) else step.at - now
            raise NoCapacity(
                f"{self._waiting} requests are already waiting for upstream capacity", retry_after
            )
        self._waiting += 1

    async def _hold_unit(self, step: _Take | _AwaitUnit, deadline: float | None) -> _Slot:
        if isinstance(step, _Take):
            step.slot.in_flight += 1
            return step.slot
        return await self._wait_for_unit(step.slots, deadline)

    async def _send_on(
        self, slot: _Slot, images: int, deadline: float | None, started: float
    ) -> Permit | None:
        """With a unit of `slot` held: reserve the send, sleep until it, grant the permit.

        None (unit given back) when the slot can no longer send in time, or was blocked or
        disabled while the request slept: the caller plans again.
        """
        now = self._clock()
        at = slot.ready_at(images, now)
        if not _in_time(at, deadline):
            self._release_unit(slot)
            return None
        sent = slot.record(at, images)
        if at > now and not await self._sleep_until(slot, sent, at - now):
            return None
        waited = self._clock() - started
        return Permit(slot.name, images, waited, sent, lambda: self._release_unit(slot))

    async def _sleep_until(self, slot: _Slot, sent: _Sent, seconds: float) -> bool:
        slot.waiting += 1
        slot.waiting_images += sent.count
        try:
            await self._sleep(seconds)
        except BaseException:
            self._drop(slot, sent)
            raise
        finally:
            slot.waiting -= 1
            slot.waiting_images -= sent.count
        if slot.usable(self._clock()):
            return True
        self._drop(slot, sent)
        return False

    def _drop(self, slot: _Slot, sent: _Sent) -> None:
        slot.unrecord(sent, self._clock())
        self._release_unit(slot)

    # --- concurrency units ---------------------------------------------------------------------

    async def _wait_for_unit(self, slots: tuple[_Slot, ...], deadline: float | None) -> _Slot:
        waiter = _UnitWaiter(frozenset(slots), asyncio.get_running_loop().create_future())
        self._unit_waiters.append(waiter)
        try:
            await self._wait_until(waiter.granted, deadline)
        except BaseException:
            self._abandon(waiter)
            raise
        if waiter.granted.done():
            return waiter.granted.result()
        self._abandon(waiter)
        names = ", ".join(slot.name for slot in slots)
        raise NoCapacity(
            f"every call slot of {names} stayed busy until the deadline", BUSY_RETRY_AFTER
        )

    async def _wait_until(self, granted: asyncio.Future[_Slot], deadline: float | None) -> None:
        # asyncio.wait never cancels what it waits on, so a unit handed over in the same
        # instant as a cancellation is not lost: _abandon passes it on.
        if deadline is None:
            await asyncio.wait({granted})
            return
        timer = asyncio.ensure_future(self._sleep(max(0.0, deadline - self._clock())))
        racers: set[asyncio.Future[_Slot] | asyncio.Future[None]] = {granted, timer}
        try:
            await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            await asyncio.wait({timer})

    def _abandon(self, waiter: _UnitWaiter) -> None:
        if waiter.granted.done():
            self._release_unit(waiter.granted.result())  # handed a unit it will not use
        else:
            self._unit_waiters.remove(waiter)
            waiter.granted.cancel()

    def _release_unit(self, slot: _Slot) -> None:
        # Hand the unit straight to the oldest request waiting for this slot: a newcomer only
        # ever finds a unit free when nobody was waiting for it, so nobody is overtaken.
        for waiter in self._unit_waiters:
            if slot in waiter.slots:
                self._unit_waiters.remove(waiter)
                waiter.granted.set_result(slot)
                return
        slot.in_flight -= 1


def _in_time(at: float, deadline: float | None) -> bool:
    return at < math.inf and (deadline is None or at <= deadline)


def _too_late(slots: list[_Slot], images: int, deadline: float | None, now: float) -> NoCapacity:
    # The retry hint counts disabled keys too: they come back, unlike a too-large request.
    comeback = min(slot.bound(images, now)[0] for slot in slots)
    if deadline is not None and deadline < now:
        return NoCapacity("the request's deadline has passed", max(0.0, comeback - now))
    why = "; ".join(slot.describe(images, now) for slot in slots)
    return NoCapacity(
        f"no key can take {images} image(s) before the deadline: {why}", comeback - now
    )
