"""Find the base64 image text inside an upstream JSON answer without parsing or decoding it.

The answer's small JSON skeleton (everything but the base64 strings) is parsed normally; the
base64 text is sliced out by a byte search. For an answer that holds one image, the slice is
streamed: the head up to the image header is read, and the rest is handed to the client as it
arrives. Base64 has no `"` and, from the providers we know, no JSON escapes; a `\\/` escape is
still handled by dropping backslashes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp

from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.imageinfo import MAX_HEADER_B64, ImageInfo, NotAnImage, sniff_b64
from imagegate.core.payload import B64Source, HeldB64, Piece, TruncatedImage
from imagegate.core.result import GeneratedImage

# Cap on how much of a non-image answer we hold (error bodies, empty 200s).
MAX_PLAIN_BODY = 8 * 1024 * 1024


def split_b64_fields(body: bytes, marker: re.Pattern[bytes]) -> tuple[bytes, list[bytes]]:
    """(skeleton, slices): the body with every marked string emptied, and the strings' contents.

    `marker` must match up to and including the string's opening quote, e.g.
    `rb'"b64_json"\\s*:\\s*"'`. The skeleton is still valid JSON, with those strings now "".
    """
    parts: list[bytes] = []
    slices: list[bytes] = []
    pos = 0
    while (match := marker.search(body, pos)) is not None:
        end = body.find(b'"', match.end())
        if end < 0:
            break  # unterminated string: leave it in the skeleton; the JSON parse will say so
        parts.append(body[pos : match.end()])
        slices.append(_unescape(body[match.end() : end]))
        pos = end
    parts.append(body[pos:])
    return b"".join(parts), slices


def held_images(slices: list[bytes], provider: str) -> list[GeneratedImage]:
    """Images from base64 slices held in memory; raises EMPTY if a slice is not an image."""
    images = []
    for b64 in slices:
        try:
            info = sniff_b64(b64, MAX_HEADER_B64)
        except NotAnImage as exc:
            raise UpstreamError(
                FailureKind.EMPTY, f"{provider} answered with image data that is unusable: {exc}"
            ) from exc
        if info is None:
            raise UpstreamError(FailureKind.EMPTY, f"{provider} answered with truncated image data")
        images.append(
            GeneratedImage(info.format, info.width, info.height, HeldB64(b64), info.has_alpha)
        )
    return images


async def _next_chunk(content: aiohttp.StreamReader) -> bytes:
    """The next piece of the body as it was received, b"" at its end.

    Not `readany()`: that joins every piece buffered so far into one new bytes object, a copy
    of megabytes per answer when the client reads slower than the upstream sends.
    """
    while True:
        chunk, end_of_http_chunk = await content.readchunk()
        if chunk or not end_of_http_chunk:
            return chunk


def _unescape(text: bytes) -> bytes:
    return text.replace(b"\\", b"") if b"\\" in text else text


@dataclass(slots=True)
class PlainBody:
    """The whole answer: it held no image marker (an error, or a 200 without an image)."""

    body: bytes


@dataclass(slots=True)
class ImageHead:
    """The answer up to its image: the head of the skeleton, the header facts, and the stream."""

    head: bytes
    info: ImageInfo
    source: StreamedB64


async def read_until_image(
    response: aiohttp.ClientResponse,
    marker: re.Pattern[bytes],
    on_skeleton: Callable[[bytes], None],
) -> PlainBody | ImageHead:
    """Read `response` until the first marked base64 string and its image header.

    `on_skeleton` receives the answer's skeleton (the answer with that string emptied) once the
    stream has been read to its end. Raises NotAnImage if the string does not start with an image.
    """
    content = response.content
    buf = b""
    searched = 0
    while (match := marker.search(buf, max(0, searched - 64))) is None:
        searched = len(buf)
        chunk = await _next_chunk(content)
        if not chunk:
            return PlainBody(buf)
        buf += chunk
        if len(buf) > MAX_PLAIN_BODY:
            raise NotAnImage("upstream answer too large and without an image")
    # The image text starts at `start` in `buf`; it is not sliced out (a copy of the piece).
    start = match.end()
    head = buf[:start]
    info = None
    while True:
        end = buf.find(b'"', start)
        limit = (MAX_HEADER_B64 if end < 0 else end - start) + start
        if buf.find(b"\\", start, limit) < 0:
            info = sniff_b64(memoryview(buf)[start:limit])
        else:
            info = sniff_b64(_unescape(buf[start:limit]))
        if info is not None or end >= 0:
            break
        if len(buf) - start > MAX_HEADER_B64:
            raise NotAnImage("no image header in the first 256 KB of image data")
        chunk = await _next_chunk(content)
        if not chunk:
            raise TruncatedImage("upstream answer ended inside the image data")
        buf += chunk
    if info is None:
        raise NotAnImage("image data too short to hold an image header")
    return ImageHead(head, info, StreamedB64(response, head, buf, start, on_skeleton))


class StreamedB64(B64Source):
    """The rest of one base64 string, read from the upstream as the client takes it.

    The first piece is the received buffer from `start` on and the last one ends at the closing
    quote: both go out as memoryviews of what was received, not as copies.
    """

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        head: bytes,
        first: bytes,
        start: int,
        on_skeleton: Callable[[bytes], None],
    ) -> None:
        self._response = response
        self._head = head
        self._first = first
        self._start = start
        self._on_skeleton = on_skeleton
        self._used = False

    async def chunks(self) -> AsyncIterator[Piece]:
        if self._used:
            raise RuntimeError("a streamed image can be read once")
        self._used = True
        data, start = self._first, self._start
        self._first = b""
        content = self._response.content
        # Until a piece shows that its encoder leaves `/` alone, pieces are checked for `\/`.
        check_escapes = True
        try:
            while (end := data.find(b'"', start)) < 0:
                if check_escapes and data.find(b"\\", start) >= 0:
                    yield data[start:].replace(b"\\", b"")
                else:
                    yield memoryview(data)[start:] if start else data
                    # A JSON encoder escapes every `/` or none, and base64 has no other
                    # character JSON escapes: no scan of the megabytes still to come.
                    check_escapes = check_escapes and data.find(b"/", start) < 0
                data, start = await _next_chunk(content), 0
                if not data:
                    raise TruncatedImage("upstream answer ended inside the image data")
            if end > start:
                if check_escapes and data.find(b"\\", start, end) >= 0:
                    yield data[start:end].replace(b"\\", b"")
                else:
                    yield memoryview(data)[start:end]
            tail = data[end:] + await content.read()
        except aiohttp.ClientError as exc:
            raise TruncatedImage(f"upstream connection broke inside the image data: {exc}") from exc
        finally:
            self._response.release()
        self._on_skeleton(self._head + tail)

    async def aclose(self) -> None:
        if not self._response.closed:
            # Unread body: drop the connection rather than drain megabytes nobody wants.
            self._response.close()
