"""The load client: closed-loop workers on one aiohttp session, and the check of every answer.

Two clients, chosen per target:

- The byte-checking client (the default) reads each answer to its last byte, in the chunks the
  socket delivers, and checks it cheaply: status 200, a plausible total length, a JSON object
  that ends, and the image field holding PNG base64 (``iVBORw0KGgo`` is base64 of the PNG
  signature). Only the first 64 KiB are kept for the byte search, so the client neither joins
  nor parses 1.5 MB per answer: on 2 cores shared with the gateway and the fake, every
  millisecond of client CPU is one the servers do not get.
- The parsing client does what every SDK does with an answer before the application sees it:
  it reads the whole body and parses the JSON (orjson, the fastest parser there is; the official
  SDKs use slower ones), then takes the image's base64 from the parsed answer and decodes its
  first 64 characters to check the PNG's pixel size. That costs ~1.5 ms of CPU per answer more
  than the byte check. Decoding all of the base64, as an application saving the image then
  does (`base64.b64decode`), costs ~7 ms more on this machine; that client would hide the
  gateway's cost behind its own, so it is not the one measured.
- The SDK client fetches each answer the way the official SDKs do: ``openai`` and
  ``google-genai`` both sit on httpx (``httpx2``) and parse the answer with its
  ``response.json()`` (the standard library's parser). It then checks the image as the parsing
  client does. What the SDKs add on top (openai's pydantic models, google-genai's decoding of
  all the base64) is left out, so a direct call and a call through the gateway cost this
  client the same. This is the client an application actually runs; its own CPU per answer is
  several times the byte check's.
"""

from __future__ import annotations

import asyncio
import binascii
import math
import re
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import httpx2
import orjson

PNG_B64_PREFIX = b"iVBORw0KGgo"
# OpenAI's answer (and the gateway's): data[0].b64_json. Whitespace allowed: fakes indent JSON.
OPENAI_IMAGE = re.compile(rb'"b64_json"\s*:\s*"' + PNG_B64_PREFIX)
# Gemini's: candidates[0].content.parts[..].inlineData.data, after mimeType or before it.
GEMINI_IMAGE = re.compile(rb'"inlineData"\s*:\s*\{[^{}]*?"data"\s*:\s*"' + PNG_B64_PREFIX)
HEAD_BYTES = 64 * 1024
TAIL_BYTES = 64
# A 1024x1024 answer is ~1.5 MB of base64; anything far off is a wrong or broken answer.
MIN_BODY_BYTES = 1_000_000
MAX_BODY_BYTES = 8_000_000


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def openai_image(answer: Any) -> Any:
    return answer["data"][0]["b64_json"]


def gemini_image(answer: Any) -> Any:
    parts = answer["candidates"][0]["content"]["parts"]
    return next(part["inlineData"]["data"] for part in parts if "inlineData" in part)


Client = Literal["bytes", "parsing", "sdk"]
CLIENT_NAMES: dict[Client, str] = {
    "bytes": "byte-checking client",
    "parsing": "parsing client",
    "sdk": "SDK client",
}


@dataclass(frozen=True)
class Target:
    """Where a request goes and how its answer is checked.

    With the parsing or SDK `client`, the answer is parsed (`image_at` finds the base64 in the
    parsed answer) and the PNG it holds must be `pixels` in size.
    """

    name: str
    url: str
    body: bytes
    headers: Mapping[str, str]
    image_pattern: re.Pattern[bytes]
    min_bytes: int = MIN_BODY_BYTES
    max_bytes: int = MAX_BODY_BYTES
    client: Client = "bytes"
    image_at: Callable[[Any], Any] = openai_image
    pixels: tuple[int, int] = (1024, 1024)


@dataclass
class Tally:
    """What a phase saw: latencies of good answers (seconds) and failures by kind."""

    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    started: float = 0.0
    finished: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def elapsed(self) -> float:
        return self.finished - self.started

    def summary(self) -> dict[str, Any]:
        """Milliseconds, rounded for the report; req/s counts good answers only."""
        ordered = sorted(self.latencies)
        ms = {f"p{q}": _ms(percentile(ordered, q)) for q in (50, 90, 99)}
        return {
            "ok": self.ok,
            "failed": self.failed,
            "failures": dict(self.failures.most_common(5)),
            "elapsed_s": round(self.elapsed, 3),
            "req_per_s": round(self.ok / self.elapsed, 2) if self.elapsed > 0 else None,
            "latency_ms": {
                **ms,
                "min": _ms(ordered[0] if ordered else math.nan),
                "max": _ms(ordered[-1] if ordered else math.nan),
                "mean": _ms(sum(ordered) / len(ordered) if ordered else math.nan),
            },
        }


class Session:
    """The load client's connections: one aiohttp session, and the SDK client's httpx2 pool.

    The aiohttp session is pooled with no connection cap (limit=0) and no proxy from the
    environment; the httpx2 pool has the openai SDK's own limits. An async context manager.
    """

    def __init__(self, timeout_seconds: float = 120.0) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=timeout_seconds, sock_connect=10)
        self.http = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)
        self._timeout = timeout_seconds
        self._sdk: httpx2.AsyncClient | None = None

    @property
    def sdk(self) -> httpx2.AsyncClient:
        if self._sdk is None:
            # openai's DefaultAsyncHttpxClient: 1000 connections, 100 kept alive.
            limits = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)
            timeout = httpx2.Timeout(self._timeout, connect=10)
            self._sdk = httpx2.AsyncClient(limits=limits, timeout=timeout, trust_env=False)
        return self._sdk

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.http.close()
        if self._sdk is not None:
            await self._sdk.aclose()


def new_session(timeout_seconds: float = 120.0) -> Session:
    return Session(timeout_seconds)


async def fetch(session: Session, target: Target) -> str | None:
    """One request, read in full; None when the answer passes the checks, else why not."""
    if target.client == "parsing":
        return await fetch_parsed(session, target)
    if target.client == "sdk":
        return await fetch_sdk(session, target)
    async with session.http.post(target.url, data=target.body, headers=target.headers) as answer:
        head = bytearray()
        tail = b""
        total = 0
        async for chunk in answer.content.iter_any():
            total += len(chunk)
            if len(head) < HEAD_BYTES:
                head += chunk[: HEAD_BYTES - len(head)]
            tail = chunk[-TAIL_BYTES:] if len(chunk) >= TAIL_BYTES else (tail + chunk)[-TAIL_BYTES:]
        return _verdict(target, answer.status, bytes(head), tail, total)


async def fetch_parsed(session: Session, target: Target) -> str | None:
    """One request as an SDK makes it: the whole answer read and parsed, the image found."""
    async with session.http.post(target.url, data=target.body, headers=target.headers) as answer:
        body = await answer.read()
        status = answer.status
    if status != 200:
        return f"HTTP {status}: {body[:160].decode(errors='replace')}"
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "the answer is not JSON"
    return _image_verdict(target, parsed)


async def fetch_sdk(session: Session, target: Target) -> str | None:
    """One request on the SDKs' transport and parser: httpx2 and `response.json()`."""
    answer = await session.sdk.post(target.url, content=target.body, headers=target.headers)
    if answer.status_code != 200:
        return f"HTTP {answer.status_code}: {answer.text[:160]}"
    try:
        parsed = answer.json()
    except ValueError:
        return "the answer is not JSON"
    return _image_verdict(target, parsed)


def _image_verdict(target: Target, parsed: Any) -> str | None:
    """The parsed answer's image: PNG base64 of `target.pixels`, not implausibly short."""
    try:
        b64 = target.image_at(parsed)
        png = binascii.a2b_base64(b64[:64], strict_mode=True)
    except (LookupError, StopIteration, TypeError, binascii.Error) as exc:
        return f"no image in the parsed answer ({type(exc).__name__})"
    if not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        return "the image is not a PNG"
    pixels = struct.unpack(">II", png[16:24])
    if pixels != target.pixels:
        return f"the image is {pixels[0]}x{pixels[1]}, not {target.pixels[0]}x{target.pixels[1]}"
    if len(b64) < target.min_bytes * 0.9:
        return f"the image's base64 is only {len(b64)} characters"
    return None


def _verdict(target: Target, status: int, head: bytes, tail: bytes, total: int) -> str | None:
    if status != 200:
        return f"HTTP {status}: {head[:160].decode(errors='replace')}"
    if not target.min_bytes <= total <= target.max_bytes:
        return f"body of {total} bytes"
    if not target.image_pattern.search(head):
        return "no PNG base64 image field in the first 64 KiB"
    if not tail.rstrip().endswith(b"}"):
        return "body does not end a JSON object"
    return None


async def timed_fetch(session: Session, target: Target, tally: Tally) -> None:
    start = time.perf_counter()
    try:
        problem = await fetch(session, target)
    except (aiohttp.ClientError, httpx2.HTTPError, TimeoutError) as exc:
        problem = f"{type(exc).__name__}: {str(exc)[:120]}"
    if problem is None:
        tally.latencies.append(time.perf_counter() - start)
    else:
        tally.failures[problem] += 1


async def run_count(session: Session, target: Target, concurrency: int, count: int) -> Tally:
    """``count`` requests by ``concurrency`` closed-loop workers (each waits for its answer)."""
    tally = Tally()
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await timed_fetch(session, target, tally)

    await _run_workers(worker, concurrency, tally)
    return tally


async def run_for(session: Session, target: Target, concurrency: int, seconds: float) -> Tally:
    """Closed-loop workers that start no request after ``seconds``; in-flight ones finish.

    The phase ends when the last answer is in, so req/s = good answers / that whole time.
    """
    tally = Tally()
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            await timed_fetch(session, target, tally)

    await _run_workers(worker, concurrency, tally)
    return tally


async def run_burst(session: Session, target: Target, size: int) -> Tally:
    """``size`` requests fired at once, each on its own connection."""
    tally = Tally()

    async def one() -> None:
        await timed_fetch(session, target, tally)

    await _run_workers(one, size, tally)
    return tally


async def _run_workers(worker: Callable[[], Awaitable[None]], count: int, tally: Tally) -> None:
    tally.started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(count):
            group.create_task(worker())
    tally.finished = time.perf_counter()


def percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) on sorted data."""
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000, 2)
