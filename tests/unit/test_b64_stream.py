"""The base64 image strings are cut out of an answer by byte search; the rest stays valid JSON."""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from imagegate.core.payload import TruncatedImage
from imagegate.providers.b64_stream import ImageHead, read_until_image, split_b64_fields

MARKER = re.compile(rb'"b64_json"\s*:\s*"')


def test_split_keeps_a_parseable_skeleton_and_every_image() -> None:
    body = b'{"created":1,"data":[{"b64_json":"AAAA"},{"b64_json": "BB\\/B"}],"usage":{"total_tokens":7}}'
    skeleton, slices = split_b64_fields(body, MARKER)
    assert slices == [b"AAAA", b"BB/B"]  # a JSON-escaped slash is unescaped
    parsed = orjson.loads(skeleton)
    assert parsed["data"] == [{"b64_json": ""}, {"b64_json": ""}]
    assert parsed["usage"]["total_tokens"] == 7


def test_text_that_mentions_the_field_name_is_not_cut() -> None:
    body = b'{"text":"the \\"b64_json\\":\\"x\\" field","data":[]}'
    skeleton, slices = split_b64_fields(body, MARKER)
    assert slices == [] and skeleton == body


# --- streamed: read_until_image and StreamedB64 over a real HTTP connection ------------------

PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 40)


def _answer(b64: bytes) -> bytes:
    return b'{"created": 7, "data": [{"b64_json": "' + b64 + b'"}], "usage": {"total_tokens": 3}}'


async def _serve_in_pieces(
    body: bytes, cuts: list[int], *, chunked: bool
) -> AsyncIterator[aiohttp.ClientResponse]:
    """A real server that writes `body` in pieces cut at `cuts`, each flushed on its own."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(body)
        await response.prepare(request)
        for start, end in itertools.pairwise([0, *cuts, len(body)]):
            await response.write(body[start:end])
            await asyncio.sleep(0.002)  # separate reads on the client side
        await response.write_eof()
        return response

    async for response in _answered_by(handler):
        yield response


async def _answered_by(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[aiohttp.ClientResponse]:
    """The client's response from a real server whose one route is `handler`."""
    app = web.Application()
    app.router.add_post("/", handler)
    async with (
        TestServer(app) as server,
        aiohttp.ClientSession() as session,
        session.post(server.make_url("/")) as response,
    ):
        yield response


def _cut_points(body: bytes) -> list[list[int]]:
    """Cuts inside the marker, just before and after the image's quotes, and every 7 bytes of
    the head (then every 1009)."""
    start = body.index(b'"b64_json"') + 4
    open_quote = body.index(b'"', body.index(b":", start)) + 1
    close_quote = body.index(b'"', open_quote)
    return [
        [start],
        [open_quote, open_quote + 5],
        [close_quote - 1, close_quote, close_quote + 1],
        [*range(7, 400, 7), *range(400, len(body), 1009)],
    ]


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
async def test_streamed_image_is_the_upstream_text_whatever_the_cuts(chunked: bool) -> None:
    body = _answer(PNG_B64)
    for cuts in _cut_points(body):
        skeletons: list[bytes] = []
        async for response in _serve_in_pieces(body, cuts, chunked=chunked):
            read = await read_until_image(response, MARKER, skeletons.append)
            assert isinstance(read, ImageHead), cuts
            assert read.info.format == "png"
            streamed = b"".join([piece async for piece in read.source.chunks()])
        assert streamed == PNG_B64, cuts
        assert orjson.loads(skeletons[0]) == {
            "created": 7,
            "data": [{"b64_json": ""}],
            "usage": {"total_tokens": 3},
        }


async def test_escaped_slashes_are_unescaped_across_cuts() -> None:
    b64 = PNG_B64[:100] + b"ab/cd/" + PNG_B64[100:]
    body = _answer(b64.replace(b"/", b"\\/"))
    escape = body.index(b"\\/")
    async for response in _serve_in_pieces(body, [escape + 1], chunked=True):
        read = await read_until_image(response, MARKER, lambda _: None)
        assert isinstance(read, ImageHead)
        assert b"".join([piece async for piece in read.source.chunks()]) == b64


async def test_an_answer_cut_inside_the_image_is_truncated() -> None:
    body = _answer(PNG_B64)
    short = body[: body.index(b"b64_json") + 2000]

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = len(body)  # promises more than it sends
        await response.prepare(request)
        await response.write(short)
        assert request.transport is not None
        request.transport.close()
        return response

    async for response in _answered_by(handler):
        read = await read_until_image(response, MARKER, lambda _: None)
        assert isinstance(read, ImageHead)
        with pytest.raises(TruncatedImage):
            async for _ in read.source.chunks():
                pass


async def test_escapes_are_looked_for_until_a_piece_shows_a_plain_slash() -> None:
    # The first piece holds no `/` at all, so it cannot tell whether the encoder escapes them.
    b64 = PNG_B64[:60].replace(b"/", b"A") + b"xy/z/" + PNG_B64[60:]
    body = _answer(b64.replace(b"/", b"\\/"))
    first_slash = body.index(b"\\/")
    async for response in _serve_in_pieces(body, [first_slash - 3], chunked=True):
        read = await read_until_image(response, MARKER, lambda _: None)
        assert isinstance(read, ImageHead)
        assert b"".join([piece async for piece in read.source.chunks()]) == b64


async def test_the_first_and_last_pieces_are_views_of_what_was_received_not_copies() -> None:
    # A 1.5 MB answer arrives in ~250 KB reads; the image starts inside the first and ends inside
    # the last. Slicing those out copied ~0.5 MB per answer on the hot path.
    body = _answer(PNG_B64)
    middle = body.index(b"b64_json") + len(PNG_B64) // 2
    async for response in _serve_in_pieces(body, [middle], chunked=False):
        read = await read_until_image(response, MARKER, lambda _: None)
        assert isinstance(read, ImageHead)
        pieces = [piece async for piece in read.source.chunks()]
    assert len(pieces) == 2
    assert all(isinstance(piece, memoryview) for piece in pieces)
    assert b"".join(pieces) == PNG_B64
