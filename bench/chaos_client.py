"""The chaos benchmark's load client: what each request got, not just whether it was fast.

Unlike bench/load.py (which checks answers cheaply to measure speed), every answer here is kept
as an :class:`Outcome`: status, time to the last byte, the gateway's error code and attempts,
and for every 2xx a full decode of its images in a worker process, after the clock stopped.
Two drivers: closed loop (N workers, each waits for its answer) and open loop (a steady rate,
whatever the answers do), which is how quota pacing has to be tested.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp
import orjson

from bench.chaos_check import image_problem

Progress = Callable[[list["Outcome"]], None]


@dataclass(slots=True)
class Outcome:
    """One client request as the client saw it."""

    status: int  # 0: no HTTP answer at all
    seconds: float  # from sending to the last byte of the answer
    code: str  # "ok" for a 2xx; else the gateway's error.code, or what went wrong
    message: str = ""
    attempts: tuple[str, ...] = ()  # "deployment:kind" of each failed attempt, in order
    problem: str | None = None  # 2xx only: why it is not a good image answer
    served_by: str = ""  # 2xx only: x-imagegate-deployment
    sent_at: float = 0.0  # seconds since the run started
    retry_hint: str = ""  # errors only: "retry-after=N should-retry=B", what a client SDK obeys

    @property
    def is_2xx(self) -> bool:
        return 200 <= self.status < 300

    @property
    def served(self) -> bool:
        return self.is_2xx and self.problem is None

    @property
    def false_success(self) -> bool:
        return self.is_2xx and self.problem is not None

    def compact(self) -> list[Any]:
        """A short JSON row for the raw results: enough to see what happened to one request."""
        return [
            round(self.sent_at, 3),
            round(self.seconds, 3),
            self.status,
            self.code,
            self.served_by or self.problem or self.retry_hint,
            list(self.attempts),
        ]


class Decoder:
    """A one-process pool that decodes 2xx answers; a context manager.

    One worker: on 2 shared cores a second one would only take CPU from the gateway and fakes.
    ``spawn`` because forking a process that runs an event loop copies its state for nothing.
    """

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._pool.shutdown(cancel_futures=True)

    async def problem(self, body: bytes, images: int, size: tuple[int, int] | None) -> str | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, image_problem, body, images, size)


@dataclass(frozen=True)
class ImageCall:
    """One kind of request to the gateway's OpenAI surface, and how its answer is judged."""

    url: str
    body: Mapping[str, Any]
    headers: Mapping[str, str]
    images: int  # the n asked for
    size: tuple[int, int] | None

    async def send(
        self, session: aiohttp.ClientSession, decoder: Decoder, started: float
    ) -> Outcome:
        sent = time.perf_counter()
        try:
            async with session.post(
                self.url, data=orjson.dumps(self.body), headers=dict(self.headers)
            ) as answer:
                raw = await answer.read()
                seconds = time.perf_counter() - sent
                status, headers = answer.status, answer.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            seconds = time.perf_counter() - sent
            failed = Outcome(0, seconds, f"client:{type(exc).__name__}", str(exc)[:200])
            failed.sent_at = sent - started
            return failed
        outcome = _outcome(status, seconds, raw)
        outcome.sent_at = sent - started
        if outcome.is_2xx:
            outcome.served_by = headers.get("x-imagegate-deployment", "")
            outcome.problem = await decoder.problem(raw, self.images, self.size)
        else:
            outcome.retry_hint = (
                f"retry-after={headers.get('retry-after', '-')}"
                f" should-retry={headers.get('x-should-retry', '-')}"
            )
        return outcome


def _outcome(status: int, seconds: float, raw: bytes) -> Outcome:
    """The outcome of an answer, its error code and attempts read from the OpenAI error body."""
    if 200 <= status < 300:
        return Outcome(status, seconds, "ok")
    try:
        error = orjson.loads(raw).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    if not isinstance(error, dict):
        return Outcome(status, seconds, f"http_{status}", raw[:200].decode(errors="replace"))
    attempts = tuple(
        f"{item.get('deployment')}:{item.get('kind')}"
        for item in error.get("attempts") or []
        if isinstance(item, dict)
    )
    code = str(error.get("code") or f"http_{status}")
    return Outcome(status, seconds, code, str(error.get("message") or ""), attempts)


async def run_closed(
    session: aiohttp.ClientSession,
    call: ImageCall,
    decoder: Decoder,
    concurrency: int,
    count: int,
    progress: Progress | None = None,
) -> list[Outcome]:
    """``count`` requests by ``concurrency`` workers; each sends its next one when answered."""
    outcomes: list[Outcome] = []
    remaining = count
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            outcomes.append(await call.send(session, decoder, started))
            if progress is not None:
                progress(outcomes)

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return outcomes


async def run_open(
    session: aiohttp.ClientSession,
    call: ImageCall,
    decoder: Decoder,
    per_second: float,
    seconds: float,
    progress: Progress | None = None,
) -> list[Outcome]:
    """One request every ``1/per_second`` s for ``seconds``, sent on schedule whatever happens.

    A closed loop would slow down when the gateway makes requests wait, hiding the very queue a
    pacer must not build; the schedule here is fixed in advance, so the offered rate is exact.
    """
    outcomes: list[Outcome] = []
    started = time.perf_counter()

    async def one() -> None:
        outcomes.append(await call.send(session, decoder, started))
        if progress is not None:
            progress(outcomes)

    async with asyncio.TaskGroup() as group:
        for index in range(round(per_second * seconds)):
            # Sleep to the absolute send time, so the schedule never drifts.
            await asyncio.sleep(max(0.0, started + index / per_second - time.perf_counter()))
            group.create_task(one())
    return outcomes


def printing_progress(total: int, label: str, every: int) -> Progress:
    """A progress callback printing one line every ``every`` answers."""

    def report(outcomes: list[Outcome]) -> None:
        done = len(outcomes)
        if done % every == 0 or done == total:
            served = sum(outcome.served for outcome in outcomes)
            print(f"   {label}: {done}/{total} answered, {served} served", flush=True)

    return report
