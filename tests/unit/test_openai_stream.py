"""Reading OpenAI's streamed Images answer in whatever pieces the network delivers."""

from __future__ import annotations

import base64
import io
import random

import orjson
import pytest
from PIL import Image

from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.payload import decode
from imagegate.core.result import GeneratedImage, ImageResult
from imagegate.providers.openai import usage_of
from imagegate.providers.openai_failures import classify_failure
from imagegate.providers.openai_stream import Events, parse_event, split_events


def png(width: int, height: int) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def stream_body(newline: bytes = b"\n") -> bytes:
    events = []
    for index in range(2):
        doc = {
            "type": "image_generation.partial_image",
            "b64_json": png(32, 16),
            "partial_image_index": index,
        }
        events.append((b"image_generation.partial_image", doc))
    done = {
        "type": "image_generation.completed",
        "b64_json": png(64, 32),
        "usage": {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12},
    }
    events.append((b"image_generation.completed", done))
    return b"".join(
        b"event: " + name + newline + b"data: " + orjson.dumps(doc) + newline + newline
        for name, doc in events
    )


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
@pytest.mark.parametrize("seed", range(6))
async def test_events_are_found_whatever_the_chunking(newline: bytes, seed: int) -> None:
    body = stream_body(newline)
    partials: list[tuple[GeneratedImage, int]] = []

    async def sink(image: GeneratedImage, index: int) -> None:
        partials.append((image, index))

    result = ImageResult(images=[])
    events = Events(result, sink, "OpenAI", classify_failure, usage_of)
    rng = random.Random(seed)
    at = 0
    while at < len(body):
        size = rng.choice([1, 2, 3, 7, 64, 500, 5000])
        await events.feed(body[at : at + size])
        at += size
    assert [index for _, index in partials] == [0, 1]
    assert all(image.size.width == 32 for image, _ in partials)
    assert [image.size.width for image in result.images] == [64]
    assert result.usage.output_image_tokens == 7
    data = await decode(result.images[0].source)
    assert Image.open(io.BytesIO(data)).size == (64, 32)


def test_split_events_starts_each_event_after_the_last() -> None:
    buffer = bytearray(b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\nevent: c")
    found = [parse_event(raw) for raw, _ in split_events(buffer, search_from=5)]
    assert found == [("a", b"1"), ("b", b"2")]


async def test_an_error_event_after_the_200_is_classified() -> None:
    async def sink(image: GeneratedImage, index: int) -> None:
        raise AssertionError("no partial expected")

    events = Events(ImageResult(images=[]), sink, "OpenAI", classify_failure, usage_of)
    error = {
        "error": {
            "message": "Your request was rejected by the safety system.",
            "type": "image_generation_user_error",
            "code": "moderation_blocked",
        }
    }
    with pytest.raises(UpstreamError) as caught:
        await events.feed(b"event: error\ndata: " + orjson.dumps(error) + b"\n\n")
    assert caught.value.kind is FailureKind.SAFETY
