"""OpenAI's streamed Images answers (`stream: true`, reference §7): partial images as they come.

The answer is server-sent events: per image, up to `partial_images` events
`image_generation.partial_image` (or `image_edit.partial_image`) and then one `...completed`
carrying the final image and the usage. Partials go to the request's sink the moment they
arrive, so a client streaming from the gateway sees them as early as it would from OpenAI; the
completed images become the result. Base64 is sliced out of each event, never decoded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import aiohttp
import orjson

from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.request import ImageRequest, PartialSink
from imagegate.core.result import ImageResult, Usage
from imagegate.providers._http import read_capped, timeout_for, transport_error
from imagegate.providers.b64_stream import MAX_PLAIN_BODY, held_images, split_b64_fields

IMAGE_MARKER = re.compile(rb'"b64_json"\s*:\s*"')
MAX_EVENT_BYTES = 64 * 1024 * 1024
Classify = Callable[[int, Mapping[str, str], bytes], UpstreamError]


def partial_count(request: ImageRequest) -> int:
    """How many partial images the client asked for (OpenAI's `partial_images`, 0–3)."""
    value = request.passthrough.get("openai", {}).get("partial_images")
    return value if isinstance(value, int) else 0


def wants_partials(request: ImageRequest) -> bool:
    return request.partials is not None and partial_count(request) > 0


def split_events(buffer: bytearray, search_from: int = 0) -> Iterator[tuple[bytes, int]]:
    """Complete events at the start of `buffer`: (event bytes, offset after it).

    The first event starts at 0; its end is looked for from `search_from` (the part before it
    was searched already, when the previous chunk arrived).
    """
    begin, start = 0, search_from
    while True:
        lf, crlf = buffer.find(b"\n\n", start), buffer.find(b"\r\n\r\n", start)
        ends = [(at, 2) for at in (lf,) if at >= 0] + [(at, 4) for at in (crlf,) if at >= 0]
        if not ends:
            return
        at, width = min(ends)
        yield bytes(buffer[begin:at]), at + width
        begin = start = at + width


def parse_event(raw: bytes) -> tuple[str, bytes]:
    """(event name, data) of one server-sent event."""
    name, data = "", []
    for line in raw.replace(b"\r\n", b"\n").split(b"\n"):
        if line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
        elif line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
    return name, b"\n".join(data)


async def stream_images(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    result: ImageResult,
    *,
    request: ImageRequest,
    sink: PartialSink,
    ceiling: float,
    provider: str,
    classify: Classify,
    usage_of: Callable[[Mapping[str, Any]], Usage],
) -> ImageResult:
    """POST a streamed Images request; partials to `sink`, completed images into `result`.

    `classify` judges error answers (and error events after the 200); `usage_of` reads the
    completed event's usage.
    """
    sent = {**headers, "Accept": "text/event-stream"}
    try:
        async with session.post(
            url, data=body, headers=sent, timeout=timeout_for(request.deadline, ceiling)
        ) as response:
            if response.status >= 300:
                raise classify(
                    response.status,
                    response.headers,
                    await read_capped(response.content, MAX_PLAIN_BODY),
                )
            events = Events(result, sink, provider, classify, usage_of)
            await events.read(response)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise transport_error(exc, provider) from exc
    if not result.images:
        raise UpstreamError(
            FailureKind.EMPTY, f"{provider}'s stream ended without a completed image", status=200
        )
    return result


class Events:
    """The event reader of one streamed answer."""

    def __init__(
        self,
        result: ImageResult,
        sink: PartialSink,
        provider: str,
        classify: Classify,
        usage_of: Callable[[Mapping[str, Any]], Usage],
    ) -> None:
        self.result, self.sink, self.provider = result, sink, provider
        self.classify, self.usage_of = classify, usage_of
        self.buffer = bytearray()
        self.search_from = 0

    async def read(self, response: aiohttp.ClientResponse) -> None:
        async for chunk in response.content.iter_any():
            await self.feed(chunk)

    async def feed(self, chunk: bytes) -> None:
        """Take the next piece of the stream; handle every event it completes."""
        buffer = self.buffer
        buffer += chunk
        consumed = 0
        for raw, after in split_events(buffer, self.search_from):
            consumed = after
            name, data = parse_event(raw)
            if data and data != b"[DONE]":
                await self.on_event(name, data)
        if consumed:
            del buffer[:consumed]
        # an event's end may straddle two chunks: search again from just before this one's end
        self.search_from = max(0, len(buffer) - 3)
        if len(buffer) > MAX_EVENT_BYTES:
            raise UpstreamError(
                FailureKind.UNAVAILABLE, f"{self.provider} sent an event over 64 MB"
            )

    async def on_event(self, name: str, data: bytes) -> None:
        skeleton_bytes, slices = split_b64_fields(data, IMAGE_MARKER)
        try:
            skeleton: Any = orjson.loads(skeleton_bytes)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(
                FailureKind.UNAVAILABLE, f"{self.provider} streamed an event that is not JSON"
            ) from exc
        if not isinstance(skeleton, dict):
            return
        if skeleton.get("error"):  # an error after the 200, judged as an error answer's body
            raise self.classify(500, {}, orjson.dumps({"error": skeleton["error"]}))
        kind = str(skeleton.get("type") or name)
        images = held_images(slices, self.provider)
        if kind.endswith(".partial_image") and images:
            await self.sink(images[0], int(skeleton.get("partial_image_index") or 0))
        elif kind.endswith(".completed") and images:
            self.result.images.extend(images)
            if isinstance(skeleton.get("usage"), dict):
                self.result.usage = self.usage_of(skeleton["usage"])
