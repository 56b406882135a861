"""How an answer reaches the socket: small pieces joined, the base64 never copied, and the
process settings `imagegate serve` applies (vectored writes under uvloop, a frozen heap)."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import uvloop
from aiohttp import http_writer, web
from aiohttp.test_utils import TestServer

from imagegate import runtime
from imagegate.surfaces.flow import coalesce


async def _pieces(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def test_small_pieces_are_joined_and_large_ones_pass_as_they_are() -> None:
    big_a, big_b = b"A" * 200_000, b"B" * 70_000
    pieces = (b'{"data":[', b'{"b64_json":"', big_a, big_b, b"C" * 10, b'"', b"}]}")
    out = [piece async for piece in coalesce(_pieces(*pieces), small=16 * 1024)]
    assert b"".join(out) == b"".join(pieces)
    assert out[0] == b'{"data":[{"b64_json":"'
    # The same objects: a megabyte of base64 is never copied to be joined with punctuation.
    assert out[1] is big_a and out[2] is big_b
    assert out[3] == b"C" * 10 + b'"}]}'


async def test_small_pieces_are_flushed_once_they_add_up() -> None:
    pieces = [bytes([65 + i]) * 6000 for i in range(5)]
    out = [piece async for piece in coalesce(_pieces(*pieces), small=16 * 1024)]
    assert b"".join(out) == b"".join(pieces)
    assert [len(piece) for piece in out] == [18_000, 12_000]


@pytest.fixture
def restored_writer_setting() -> Iterator[None]:
    saved = http_writer.SKIP_WRITELINES
    yield
    http_writer.SKIP_WRITELINES = saved


def test_vectored_writes_are_enabled_where_aiohttp_would_join(
    restored_writer_setting: None,
) -> None:
    http_writer.SKIP_WRITELINES = True
    runtime.enable_vectored_writes()
    # On 3.11 (this project's floor) aiohttp joins framing and data unless told otherwise.
    if sys.version_info < (3, 12, 9):
        assert http_writer.SKIP_WRITELINES is False


def test_a_chunked_answer_is_byte_exact_over_uvloop_with_vectored_writes(
    restored_writer_setting: None,
) -> None:
    """The chunk frames and data go out through uvloop's writelines, with back-pressure: a
    client reading slowly still gets every byte of a multi-megabyte answer, in order."""
    runtime.enable_vectored_writes()
    pieces = [bytes([48 + i % 10]) * (250_000 + i) for i in range(12)]

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        async for piece in coalesce(_pieces(b"[", *pieces, b"]")):
            await response.write(piece)
        await response.write_eof()
        return response

    async def main() -> bytes:
        app = web.Application()
        app.router.add_get("/", handler)
        async with (
            TestServer(app) as server,
            aiohttp.ClientSession() as session,
            session.get(server.make_url("/")) as response,
        ):
            assert response.headers["Transfer-Encoding"] == "chunked"
            received = []
            while chunk := await response.content.read(100_000):
                received.append(chunk)
                await asyncio.sleep(0.001)
            return b"".join(received)

    assert uvloop.run(main()) == b"[" + b"".join(pieces) + b"]"


async def test_the_startup_heap_is_frozen_once_the_app_has_started() -> None:
    app = web.Application()
    runtime.freeze_startup_heap(app)
    gc.unfreeze()
    try:
        async with TestServer(app):
            assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
