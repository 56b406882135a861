"""A streamed answer (`stream: true` with `partial_images`) that starts with the first partial.

OpenAI sends partial images while the final image is being made; so does the gateway. The
request carries `PartialStream.partial` as its sink: the first partial an upstream streams
commits the 200 and the SSE answer, and each one is written out as it comes. The completed
images follow once the request is served and booked. A failure after the 200 is an `error`
event, which the openai SDK raises as an APIError.

Partials come from whichever candidate is working; if it fails and another serves, the client
has seen partials of an image it will not get, as it could from one upstream retrying.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson
from aiohttp import web

from imagegate.core.payload import Piece, TruncatedImage
from imagegate.core.request import ImageRequest
from imagegate.core.result import GeneratedImage
from imagegate.surfaces.openai.translate import image_event


class PartialStream:
    def __init__(self, http: web.Request, family: str) -> None:
        self.http = http
        self.family = family
        self.request: ImageRequest | None = None  # set once the request is built
        self.response: web.StreamResponse | None = None
        self.gone = False  # the client went away: partials stop, the request goes on
        self.created = int(time.time())

    @property
    def started(self) -> bool:
        return self.response is not None

    async def partial(self, image: GeneratedImage, index: int) -> None:
        if self.gone or self.request is None:
            return
        event = f"{self.family}.partial_image"
        pieces = image_event(
            image, self.request, event, self.created, {"partial_image_index": index}
        )
        await self.write(pieces)

    async def write(self, pieces: AsyncIterator[Piece]) -> bool:
        """Write pieces to the answer (committing it first); False once the client is gone."""
        try:
            if self.response is None:
                response = web.StreamResponse(headers={"Cache-Control": "no-store"})
                response.content_type = "text/event-stream"
                await response.prepare(self.http)
                self.response = response
            async for piece in pieces:
                await self.response.write(piece)
        except (ConnectionError, RuntimeError):
            # A closed transport; the request still finishes and is booked.
            self.gone = True
        except TruncatedImage:
            # The upstream broke off mid-image after the 200: cut the connection, so the client
            # sees a broken answer, never a complete-looking one.
            if self.http.transport is not None:
                self.http.transport.close()
            self.gone = True
        return not self.gone

    async def error(self, body: bytes) -> None:
        """An `error` event with the error object the non-streamed answer would have had."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = {"error": {"message": body.decode("utf-8", "replace")}}
        event = orjson.dumps({"type": "error", **doc})

        async def pieces() -> AsyncIterator[Piece]:
            yield b"event: error\ndata: " + event + b"\n\n"

        await self.write(pieces())

    async def end(self) -> web.StreamResponse:
        assert self.response is not None
        if not self.gone:
            try:
                await self.response.write_eof()
            except (ConnectionError, RuntimeError):
                self.gone = True
        return self.response
