"""An ImageResult becomes Gemini's answer: one candidate per image, base64 passed through."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from imagegate.core.errors import AllCandidatesFailed, FailureKind, UpstreamError
from imagegate.core.payload import HeldB64
from imagegate.core.result import Attempt, GeneratedImage, ImageResult, Usage
from imagegate.surfaces.gemini.answer import (
    AnswerMeta,
    framed,
    json_answer,
    refused_answer,
    stream_answer,
)

B64 = [b"iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB", b"/9j/4AAQSkZJRgABAQ+/"]  # passed through as is
META = AnswerMeta(response_id="req_9", text_wanted=True)


def part(index: int, text: str | None, usage: Usage) -> ImageResult:
    image = GeneratedImage("png" if index == 0 else "jpeg", 16, 9, HeldB64(B64[index]))
    return ImageResult([image], "gemini", "pro", "gemini-3-pro-image", text=text, usage=usage)


def merged() -> ImageResult:
    """What the router hands over for n=2 fanned out: two provider results merged."""
    parts = [part(0, "Here it is.", Usage(3, 0, 1120, 5)), part(1, None, Usage(3, 0, 1120, 0))]
    return ImageResult(
        [p.images[0] for p in parts], "gemini", "pro", "gemini-3-pro-image", parts=parts
    )


async def joined(pieces: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in pieces])


async def test_generate_content_answer_has_a_candidate_per_image() -> None:
    raw = await joined(json_answer(merged(), META))
    assert B64[0] in raw and B64[1] in raw  # byte for byte, never decoded
    doc = orjson.loads(raw)
    first, second = doc["candidates"]
    assert first == {
        "content": {
            "role": "model",
            "parts": [
                {"inlineData": {"mimeType": "image/png", "data": B64[0].decode()}},
                {"text": "Here it is."},
            ],
        },
        "finishReason": "STOP",
        "index": 0,
    }
    assert second["content"]["parts"] == [
        {"inlineData": {"mimeType": "image/jpeg", "data": B64[1].decode()}}
    ]
    assert second["index"] == 1
    assert doc["usageMetadata"] == {
        "promptTokenCount": 6,
        "candidatesTokenCount": 2245,
        "totalTokenCount": 2251,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 6}],
        "candidatesTokensDetails": [
            {"modality": "TEXT", "tokenCount": 5},
            {"modality": "IMAGE", "tokenCount": 2240},
        ],
    }
    assert (doc["modelVersion"], doc["responseId"]) == ("gemini-3-pro-image", "req_9")


async def test_transcoded_images_are_the_ones_answered() -> None:
    result = merged()
    webp = [b"UklGRiQAAABXRUJQVlA4", b"UklGRiQAAABXRUJQVlA5"]
    result.images = [GeneratedImage("webp", 16, 9, HeldB64(data)) for data in webp]
    doc = orjson.loads(await joined(json_answer(result, META)))
    sent = [c["content"]["parts"][0]["inlineData"] for c in doc["candidates"]]
    assert sent == [{"mimeType": "image/webp", "data": data.decode()} for data in webp]
    assert doc["candidates"][0]["content"]["parts"][1] == {"text": "Here it is."}


async def test_no_text_part_when_the_client_asked_for_images_only() -> None:
    meta = AnswerMeta(response_id="r", text_wanted=False)
    doc = orjson.loads(await joined(json_answer(merged(), meta)))
    assert all(len(c["content"]["parts"]) == 1 for c in doc["candidates"])


async def test_sse_stream_has_one_event_per_image_and_usage_on_the_last() -> None:
    raw = await joined(stream_answer(merged(), META, sse=True))
    events = raw.split(b"\r\n\r\n")
    assert events[-1] == b"" and len(events) == 3
    docs = [orjson.loads(event.removeprefix(b"data: ")) for event in events[:-1]]
    assert [d["candidates"][0]["index"] for d in docs] == [0, 1]
    assert "usageMetadata" not in docs[0] and docs[1]["usageMetadata"]["totalTokenCount"] == 2251


async def test_stream_without_sse_is_a_json_array_of_the_same_chunks() -> None:
    docs = orjson.loads(await joined(stream_answer(merged(), META, sse=False)))
    assert len(docs) == 2 and docs[1]["usageMetadata"]["promptTokenCount"] == 6


def refusal(code: str | None) -> AllCandidatesFailed:
    final = UpstreamError(FailureKind.SAFETY, "withheld; rephrase", provider_code=code)
    record = Attempt("pro", "gemini", "gemini-3-pro-image", FailureKind.SAFETY, 200, 0.1)
    return AllCandidatesFailed(final, [], [record])


def test_a_refusal_keeps_geminis_finish_reason_and_names_others_image_safety() -> None:
    gemini = refused_answer(refusal("IMAGE_PROHIBITED_CONTENT"), META)
    [candidate] = gemini["candidates"]
    assert candidate["finishReason"] == "IMAGE_PROHIBITED_CONTENT"
    assert candidate["finishMessage"] == "withheld; rephrase" and candidate["content"] == {}
    assert gemini["modelVersion"] == "gemini-3-pro-image"
    other = refused_answer(refusal("moderation_blocked"), META)
    assert other["candidates"][0]["finishReason"] == "IMAGE_SAFETY"


def test_whole_documents_are_framed_for_the_method_called() -> None:
    doc = {"a": 1}
    assert framed(doc, streaming=False, sse=False) == b'{"a":1}'
    assert framed(doc, streaming=True, sse=False) == b'[{"a":1}]'
    assert framed(doc, streaming=True, sse=True) == b'data: {"a":1}\r\n\r\n'
