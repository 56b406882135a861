"""The pacer keeps every key under its quota ahead of time, in virtual time: nothing really waits."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from imagegate.core.deployment import Limits
from imagegate.router.pacer import MemoryPacer, NoCapacity, Pacer, _Bound, _Slot

T = TypeVar("T")


async def settle() -> None:
    """Let every runnable task reach its next real wait (no I/O here, so a few rounds do)."""
    for _ in range(30):
        await asyncio.sleep(0)


async def at_once(awaitable: Awaitable[T]) -> T:
    """Await what must be served or refused at once: fail, rather than hang, if it waits."""
    task = asyncio.ensure_future(awaitable)
    await settle()
    if not task.done():
        task.cancel()
        await asyncio.wait({task})
        raise AssertionError("it waited, where it should have been served or refused at once")
    return task.result()


class FakeTime:
    """Virtual time: `sleep` parks the caller until the test moves the clock past its instant."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), wake))
        await wake

    async def advance(self, seconds: float) -> None:
        """Move the clock forward, waking each sleeper at its own instant, in order."""
        end = self.now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= end:
            at, _, wake = heapq.heappop(self._sleepers)
            if not wake.done():
                self.now = max(self.now, at)
                wake.set_result(None)
                await settle()
        self.now = end

    async def run(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable`, moving the clock straight to the next sleeper whenever it waits."""
        task = asyncio.ensure_future(awaitable)
        await settle()
        while not task.done():
            if not self._sleepers:
                task.cancel()
                raise AssertionError("stuck: nothing is left that could wake it")
            await self.advance(max(0.0, self._sleepers[0][0] - self.now))
        return task.result()


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def make_pacer(fake: FakeTime, max_waiters: int = 256, **slots: Limits) -> MemoryPacer:
    # Exact one-minute windows: the timing arithmetic below is written for them.
    pacer = MemoryPacer(
        clock=fake.clock, sleep=fake.sleep, max_waiters=max_waiters, window_margin=0.0
    )
    for name, limits in slots.items():
        pacer.register(name, limits)
    return pacer


async def send(pacer: MemoryPacer, slot: str, images: int) -> None:
    """One call made and finished at once: counted in the windows, no unit kept."""
    (await at_once(pacer.acquire([slot], images, deadline=None))).release()


def test_memory_pacer_is_a_pacer() -> None:
    pacer: Pacer = MemoryPacer()  # mypy checks the protocol; this keeps it in the test run
    assert isinstance(pacer, MemoryPacer)


async def test_images_per_minute_counts_images_not_requests(fake: FakeTime) -> None:
    pacer = make_pacer(fake, a=Limits(images_per_minute=10))
    await send(pacer, "a", 4)
    await send(pacer, "a", 4)
    assert pacer.earliest(["a"], 2) == 0
    await send(pacer, "a", 2)
    usage = pacer.usage("a")
    assert (usage.images_last_minute, usage.requests_last_minute) == (10, 3)
    assert pacer.earliest(["a"], 1) == 60.0


async def test_requests_per_minute(fake: FakeTime) -> None:
    pacer = make_pacer(fake, a=Limits(requests_per_minute=2))
    await send(pacer, "a", 4)
    await fake.advance(15)
    await send(pacer, "a", 4)
    assert pacer.earliest(["a"], 1) == 45.0  # the first request leaves the window at 60 s


async def test_requests_per_day_are_counted_to_the_end_of_their_minute(fake: FakeTime) -> None:
    pacer = make_pacer(fake, a=Limits(requests_per_day=2))
    await fake.advance(10)
    await send(pacer, "a", 1)
    await fake.advance(1000)
    await send(pacer, "a", 1)
    assert pacer.usage("a").requests_last_day == 2
    # The first send (at 10 s) is kept in the minute ending at 60 s: free a day after that.
    assert pacer.earliest(["a"], 1) == 60.0 + 86_400.0 - fake.now
    await fake.advance(86_400 - 1010 + 60)
    assert pacer.usage("a").requests_last_day == 1
    assert pacer.earliest(["a"], 1) == 0


async def test_concurrency_cap_holds_until_release(fake: FakeTime) -> None:
    pacer = make_pacer(fake, a=Limits(concurrency=1))
    first = await at_once(pacer.acquire(["a"], 1, deadline=None))
    second = asyncio.ensure_future(pacer.acquire(["a"], 1, deadline=None))
    await fake.advance(7)
    assert not second.done() and pacer.usage("a").in_flight == 1
    first.release()
    first.release()  # twice is harmless: the unit is not given back again
    permit = await fake.run(second)
    assert permit.waited == 7.0 and pacer.usage("a").in_flight == 1
    async with permit:
        pass
    assert pacer.usage("a").in_flight == 0


async def test_concurrency_wait_ends_at_the_deadline(fake: FakeTime) -> None:
    pacer = make_pacer(fake, a=Limits(concurrency=1))
    held = await at_once(pacer.acquire(["a"], 1, deadline=None))
    with pytest.raises(NoCapacity, match="busy") as caught:
        await fake.run(pacer.acquire(["a"], 1, deadline=20.0))
    assert fake.now == 20.0 and caught.value.retry_after > 0
    held.release()
    assert pacer.usage("a").in_flight == 0  # the unit was not handed to the request that left


async def test_picks_the_key_with_most_headroom(fake: FakeTime) -> None:
    limits = Limits(images_per_minute=10)
    pacer = make_pacer(fake, a=limits, b=limits, c=limits)
    await send(pacer, "a", 6)
    await send(pacer, "b", 2)
    await send(pacer, "c", 5)
    assert (await at_once(pacer.acquire(["a", "b", "c"], 3, deadline=None))).slot == "b"
    # b and c now both have 5 left: the tie goes to the first named.
    assert (await at_once(pacer.acquire(["a", "c", "b"], 1, deadline=None))).slot == "c"
    # A key whose window is full is passed over for one with room, however little.
    await send(pacer, "a", 4)
    assert (await at_once(pacer.acquire(["a", "b"], 1, deadline=None))).slot == "b"


async def test_waits_until_the_oldest_send_leaves_the_window(fake: FakeTime) -> None:
    pacer = make_pacer(fake, a=Limits(images_per_minute=10))
    await send(pacer, "a", 4)  # at 0 s: leaves at 60 s
    await fake.advance(10)
    await send(pacer, "a", 6)  # at 10 s: leaves at 70 s
    await fake.advance(10)
    assert pacer.earliest(["a"], 3) == 40.0  # only the 4 need to leave
    assert pacer.earliest(["a"], 5) == 50.0  # both must leave
    permit = await fake.run(pacer.acquire(["a"], 3, deadline=None))
    assert fake.now == 60.0 and permit.waited == 40.0


async def test_rejects_at_once_when_capacity_comes_after_the_deadline(fake: FakeTime) -> None:
    pacer = make_pacer(fake, a=Limits(images_per_minute=10))
    await send(pacer, "a", 10)
    await fake.advance(5)
    with pytest.raises(NoCapacity) as caught:
        await at_once(pacer.acquire(["a"], 1, deadline=fake.now + 30))
    assert caught.value.retry_after == 55.0 and fake.now == 5.0
    assert "a is at its 10 images/minute" in caught.value.reason
    # Room exactly at the deadline is in time.
    permit = await fake.run(pacer.acquire(["a"], 1, deadline=60.0))
    assert fake.now == 60.0 and permit.slot == "a"


async def test_a_full_queue_rejects_at_once(fake: FakeTime) -> None:
    pacer = make_pacer(fake, max_waiters=2, a=Limits(images_per_minute=1))
    await send(pacer, "a", 1)
    waiters = [asyncio.ensure_future(pacer.acquire(["a"], 1, deadline=None)) for _ in range(2)]
    await settle()
    with pytest.raises(NoCapacity, match="2 requests are already waiting") as caught:
        await at_once(pacer.acquire(["a"], 1, deadline=None))
    assert caught.value.retry_after == 180.0  # behind the two queued: 60 s and 120 s
    assert [permit.waited for permit in await fake.run(asyncio.gather(*waiters))] == [60, 120]


async def test_a_later_small_request_does_not_overtake_an_earlier_large_one(
    fake: FakeTime,
) -> None:
    pacer = make_pacer(fake, a=Limits(images_per_minute=10))
    await send(pacer, "a", 6)  # leaves at 60 s
    await fake.advance(30)
    await send(pacer, "a", 4)  # leaves at 90 s
    await fake.advance(10)
    granted: list[tuple[str, float]] = []

    async def ask(name: str, images: int) -> None:
        await pacer.acquire(["a"], images, deadline=None)
        granted.append((name, fake.now))

    large = asyncio.ensure_future(ask("large", 8))  # fits only at 90 s
    await settle()
    small = asyncio.ensure_future(ask("small", 1))  # alone it would fit at 60 s
    await fake.run(asyncio.gather(large, small))
    assert granted == [("large", 90.0), ("small", 90.0)]


async def test_a_cancelled_waiter_leaves_no_trace(fake: FakeTime) -> None:
    pacer = make_pacer(fake, a=Limits(images_per_minute=10, concurrency=2))
    await send(pacer, "a", 10)
    before = pacer.usage("a")
    waiter = asyncio.ensure_future(pacer.acquire(["a"], 5, deadline=None))
    await settle()
    # A reservation is not a send: usage (the router's quota_stuck test) leaves it out.
    during = pacer.usage("a")
    assert (during.waiting, during.images_last_minute, during.in_flight) == (1, 10, 0)
    assert pacer.earliest(["a"], 10) == 120.0
    waiter.cancel()
    await settle()
    assert waiter.cancelled() and pacer.usage("a") == before
    assert pacer.earliest(["a"], 10) == 60.0  # the reservation is gone, not just unused


async def test_after_a_cancelled_waiter_newcomers_still_queue_behind_the_rest(
    fake: FakeTime,
) -> None:
    pacer = make_pacer(fake, a=Limits(images_per_minute=10))
    await send(pacer, "a", 10)
    sent: list[tuple[str, float, int]] = [("first", 0.0, 10)]

    async def ask(name: str, images: int) -> None:
        await pacer.acquire(["a"], images, deadline=None)
        sent.append((name, fake.now, images))

    cancelled = asyncio.ensure_future(ask("cancelled", 5))  # reserved at 60 s
    await settle()
    stays = asyncio.ensure_future(ask("stays", 6))  # reserved at 120 s, behind it
    await settle()
    cancelled.cancel()
    await settle()
    # The room at 60 s is free again, but only ahead of the waiter at 120 s: a newcomer sent
    # there would share the minute before 120 s with it and go over.
    later = [asyncio.ensure_future(ask(name, n)) for name, n in (("small", 4), ("large", 8))]
    await fake.run(asyncio.gather(stays, *later))
    assert [(name, at) for name, at, _ in sent] == [
        ("first", 0),
        ("stays", 120),
        ("small", 120),
        ("large", 180),
    ]
    for _, start, _ in sent:
        assert sum(n for _, at, n in sent if start <= at < start + 60) <= 10


async def test_a_unit_handed_to_a_waiter_cancelled_in_the_same_instant_passes_on(
    fake: FakeTime,
) -> None:
    pacer = make_pacer(fake, a=Limits(concurrency=1))
    held = await at_once(pacer.acquire(["a"], 1, deadline=None))
    waiter = asyncio.ensure_future(pacer.acquire(["a"], 1, deadline=None))
    await settle()
    held.release()  # hands the unit to the waiter...
    waiter.cancel()  # ...which leaves before it could use it
    await settle()
    assert waiter.cancelled() and pacer.usage("a").in_flight == 0


@pytest.mark.parametrize("deadline", [None, 50.0])
async def test_a_cancelled_unit_waiter_leaves_no_trace(
    fake: FakeTime, deadline: float | None
) -> None:
    pacer = make_pacer(fake, a=Limits(concurrency=1))
    held = await at_once(pacer.acquire(["a"], 1, deadline=None))
    waiter = asyncio.ensure_future(pacer.acquire(["a"], 1, deadline=deadline))
    await settle()
    waiter.cancel()
    await settle()
    held.release()
    assert waiter.cancelled() and pacer.usage("a").in_flight == 0
    assert (await at_once(pacer.acquire(["a"], 1, deadline=None))).waited == 0


async def test_block_honours_the_upstreams_retry_after(fake: FakeTime) -> None:
    pacer = make_pacer(fake, a=Limits(), b=Limits(images_per_minute=1))
    pacer.block("a", 30)
    pacer.block("a", 5)  # a shorter hint does not shorten the block
    assert pacer.usage("a").blocked_for == 30.0
    assert (await at_once(pacer.acquire(["a", "b"], 1, deadline=None))).slot == "b"
    permit = await fake.run(pacer.acquire(["a", "b"], 1, deadline=None))
    assert (permit.slot, fake.now) == ("a", 30.0)


async def test_a_block_during_the_wait_sends_the_request_back_to_planning(
    fake: FakeTime,
) -> None:
    pacer = make_pacer(fake, a=Limits(images_per_minute=1))
    await send(pacer, "a", 1)
    waiter = asyncio.ensure_future(pacer.acquire(["a"], 1, deadline=None))
    await fake.advance(10)
    pacer.block("a", 100)  # the reservation at 60 s falls inside the block
    permit = await fake.run(waiter)
    assert (fake.now, permit.waited) == (110.0, 110.0)
    assert pacer.usage("a").requests_last_minute == 1


async def test_disable_skips_the_key_and_says_why(fake: FakeTime) -> None:
    pacer = make_pacer(fake, a=Limits(), b=Limits())
    pacer.disable("a", "auth: the key was revoked")
    assert pacer.usage("a").disabled_reason == "auth: the key was revoked"
    assert pacer.usage("a").blocked_for == 600.0
    assert (await at_once(pacer.acquire(["a", "b"], 1, deadline=None))).slot == "b"
    assert pacer.earliest(["a"], 1) == math.inf
    with pytest.raises(NoCapacity, match="the key was revoked") as caught:
        await at_once(pacer.acquire(["a"], 1, deadline=None))  # not even without a deadline
    assert caught.value.retry_after == 600.0 and fake.now == 0
    await fake.advance(600)
    assert pacer.usage("a").disabled_reason is None
    assert (await at_once(pacer.acquire(["a"], 1, deadline=None))).slot == "a"


async def test_more_images_than_images_per_minute_never_fit(fake: FakeTime) -> None:
    pacer = make_pacer(fake, a=Limits(images_per_minute=4))
    assert pacer.earliest(["a"], 5) == math.inf
    with pytest.raises(NoCapacity, match="allows 4 images/minute, fewer than the 5") as caught:
        await at_once(pacer.acquire(["a"], 5, deadline=None))
    assert caught.value.retry_after == math.inf


async def test_refund_gives_back_what_the_permit_counted(fake: FakeTime) -> None:
    pacer = make_pacer(fake, a=Limits(images_per_minute=10, requests_per_day=5))
    await send(pacer, "a", 3)
    permit = await at_once(pacer.acquire(["a"], 4, deadline=None))
    permit.release()
    pacer.refund(permit)  # connection refused: the upstream never saw it
    pacer.refund(permit)  # twice is harmless
    usage = pacer.usage("a")
    assert (usage.images_last_minute, usage.requests_last_minute, usage.requests_last_day) == (
        3,
        1,
        1,
    )


async def test_unknown_slots_and_empty_asks_are_errors(fake: FakeTime) -> None:
    pacer = make_pacer(fake, a=Limits())
    with pytest.raises(KeyError, match="never registered"):
        await at_once(pacer.acquire(["nope"], 1, deadline=None))
    with pytest.raises(ValueError, match="at least one image"):
        await at_once(pacer.acquire(["a"], 0, deadline=None))


async def test_three_keys_offered_twice_their_quota_never_exceed_it(fake: FakeTime) -> None:
    """3 keys × 10 images/minute, offered 60 images/minute for 3 minutes, deadline 30 s."""
    keys = ["flash/k1", "flash/k2", "flash/k3"]
    pacer = make_pacer(fake)
    for key in keys:
        pacer.register(key, Limits(images_per_minute=10))
    rng = random.Random(7)
    arrivals: list[tuple[float, int]] = []
    at = 0.0
    while at < 180:  # one image a second on average, in requests of 1 to 3
        images = rng.choice([1, 2, 3])
        arrivals.append((at, images))
        at += images
    sends: list[tuple[str, float, int]] = []
    served: list[tuple[float, float]] = []  # (asked at, sent at)
    rejected: list[tuple[float, float, float]] = []  # (asked at, rejected at, retry after)

    async def client(asked: float, images: int) -> None:
        await fake.sleep(asked)
        try:
            permit = await pacer.acquire(keys, images, deadline=asked + 30)
        except NoCapacity as exc:
            rejected.append((asked, fake.now, exc.retry_after))
            return
        sends.append((permit.slot, fake.now, images))
        served.append((asked, fake.now))
        async with permit:
            await fake.sleep(2 + images)  # the upstream call

    async with asyncio.TaskGroup() as group:
        for asked, images in arrivals:
            group.create_task(client(asked, images))
        await fake.advance(400)

    for key in keys:
        times = sorted((t, n) for slot, t, n in sends if slot == key)
        for start, _ in times:
            in_window = sum(n for t, n in times if start <= t < start + 60)
            assert in_window <= 10, f"{key} sent {in_window} images in the minute from {start}"
    assert len(served) + len(rejected) == len(arrivals)
    assert all(asked <= sent <= asked + 30 for asked, sent in served)
    assert all(when == asked and asked + retry > asked + 30 for asked, when, retry in rejected)
    # The keys are kept busy. Sends fall in [0 s, 210 s], four minutes from 0 s, so at most
    # 3 keys × 4 × 10 = 120 images can go out; turning requests away must not waste that.
    assert sum(n for _, _, n in sends) >= 108
    assert rejected, "half the offered load cannot fit: some requests must be turned away"


async def test_permit_is_an_async_context_manager(fake: FakeTime) -> None:
    pacer = make_pacer(fake, a=Limits(concurrency=1))
    async with await at_once(pacer.acquire(["a"], 1, deadline=None)) as permit:
        assert permit.slot == "a" and pacer.usage("a").in_flight == 1
    assert pacer.usage("a").in_flight == 0


async def test_the_default_margin_keeps_a_send_counted_past_the_minute() -> None:
    """Upstreams count arrival; a send granted at exactly +60 s could land inside their window."""
    fake = FakeTime()
    pacer = MemoryPacer(clock=fake.clock, sleep=fake.sleep)
    pacer.register("k", Limits(images_per_minute=1))
    (await pacer.acquire(["k"], 1, None)).release()
    assert pacer.earliest(["k"], 1) == pytest.approx(61.0)


def test_ready_at_agrees_with_bound_in_every_state() -> None:
    """`ready_at` is `bound` without the reason, written out for speed: the two must agree."""
    rng = random.Random(11)
    choices = [None, 0, 1, 2, 5]
    for _ in range(3000):
        limits = Limits(
            images_per_minute=rng.choice(choices),
            requests_per_minute=rng.choice(choices),
            requests_per_day=rng.choice(choices),
            concurrency=rng.choice(choices),
        )
        slot = _Slot("k", limits)
        now = 1000.0
        for sent in sorted(now + rng.uniform(-70, 5) for _ in range(rng.randrange(4))):
            slot.record(sent, rng.randrange(1, 3))  # in time order, as the pacer records
        slot.blocked_until = rng.choice([-math.inf, now - 1, now + rng.uniform(0, 90)])
        slot.disabled_until = rng.choice([-math.inf, now - 1, now + rng.uniform(0, 90)])
        images = rng.randrange(1, 4)
        at, bound = slot.bound(images, now)
        assert slot.ready_at(images, now) == (math.inf if bound is _Bound.DISABLED else at)
