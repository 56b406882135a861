"""ImageResult → Gemini's GenerateContentResponse, as pieces of bytes (reference §4, §5).

One candidate per image, in order: `response.parts` (candidate 0) is the first image, and
`response.candidates[i]` the others. Each image's base64 is written as it arrives from the
upstream, never decoded. A streamed Gemini answer gives its text and usage only after the image
(they sit in the upstream answer's tail), so the text part follows the image part and the
usage closes the answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from imagegate.core.errors import AllCandidatesFailed
from imagegate.core.payload import Piece
from imagegate.core.result import GeneratedImage, ImageResult, Usage

SSE_END = b"\r\n\r\n"  # google-genai splits events on blank lines; Google sends CRLF


@dataclass(frozen=True, slots=True)
class AnswerMeta:
    response_id: str
    text_wanted: bool  # responseModalities allowed TEXT


def _images(result: ImageResult) -> Iterator[tuple[GeneratedImage, ImageResult | None]]:
    """Each image, with the provider result whose text follows it (the first of each call).

    The images are `result.images`, not the parts': the gateway may have transcoded them.
    """
    texts: dict[int, ImageResult] = {}
    position = 0
    for part in result.parts or [result]:
        texts[position] = part
        position += len(part.images)
    for index, image in enumerate(result.images):
        yield image, texts.get(index)


async def _candidate(
    image: GeneratedImage, text_of: ImageResult | None, index: int, meta: AnswerMeta
) -> AsyncIterator[Piece]:
    yield b'{"content":{"role":"model","parts":[{"inlineData":{"mimeType":"%s","data":"' % (
        image.mime_type.encode()
    )
    async for chunk in image.source.chunks():
        yield chunk
    yield b'"}}'
    # Read only now: a streamed upstream answer completes its text once the image is through.
    if text_of is not None and text_of.text and meta.text_wanted:
        yield b"," + orjson.dumps({"text": text_of.text})
    yield b']},"finishReason":"STOP","index":%d}' % index


def _tail(result: ImageResult, meta: AnswerMeta, *, usage: bool) -> bytes:
    fields: dict[str, Any] = {}
    if usage:
        fields["usageMetadata"] = usage_metadata(result.total_usage())
    fields["modelVersion"] = result.model
    fields["responseId"] = meta.response_id
    return orjson.dumps(fields)[1:]  # without its "{": it continues the answer's object


async def json_answer(result: ImageResult, meta: AnswerMeta) -> AsyncIterator[Piece]:
    """`generateContent`: one response holding every candidate."""
    yield b'{"candidates":['
    for index, (image, text_of) in enumerate(_images(result)):
        if index:
            yield b","
        async for piece in _candidate(image, text_of, index, meta):
            yield piece
    yield b"],"
    yield _tail(result, meta, usage=True)


async def stream_answer(
    result: ImageResult, meta: AnswerMeta, *, sse: bool
) -> AsyncIterator[Piece]:
    """`streamGenerateContent`: one chunk per candidate, each image whole in its chunk, the
    usage on the last; SSE events with `alt=sse`, else the elements of a JSON array."""
    total = len(result.images)
    if not sse:
        yield b"["
    for index, (image, text_of) in enumerate(_images(result)):
        if index and not sse:
            yield b",\r\n"
        yield b'data: {"candidates":[' if sse else b'{"candidates":['
        async for piece in _candidate(image, text_of, index, meta):
            yield piece
        yield b"],"
        yield _tail(result, meta, usage=index == total - 1)
        if sse:
            yield SSE_END
    if not sse:
        yield b"]"


def usage_metadata(usage: Usage) -> dict[str, Any]:
    prompt, output = usage.input_tokens, usage.output_tokens
    meta: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output,
        "totalTokenCount": prompt + output,
    }
    prompt_details = _details(usage.input_text_tokens, usage.input_image_tokens)
    output_details = _details(usage.output_text_tokens, usage.output_image_tokens)
    if prompt_details:
        meta["promptTokensDetails"] = prompt_details
    if output_details:
        meta["candidatesTokensDetails"] = output_details
    return meta


def _details(text: int, image: int) -> list[dict[str, Any]]:
    pairs = (("TEXT", text), ("IMAGE", image))
    return [{"modality": modality, "tokenCount": count} for modality, count in pairs if count]


# Gemini's own finish reasons for a withheld image; other providers' refusals read IMAGE_SAFETY.
_FINISH_REASONS = {
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
}


def refused_answer(exc: AllCandidatesFailed, meta: AnswerMeta) -> dict[str, Any]:
    """A safety refusal as Google gives it: HTTP 200, no image, the finish reason saying why.

    SDK code written against Google checks `candidates[0].finish_reason`; an exception here
    would break it. The gateway's diagnosis is the finishMessage.
    """
    final = exc.final
    code = (final.provider_code or "").upper()
    model = exc.records[-1].model if exc.records else ""
    return {
        "candidates": [
            {
                "content": {},
                "finishReason": code if code in _FINISH_REASONS else "IMAGE_SAFETY",
                "finishMessage": final.diagnosis,
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 0, "totalTokenCount": 0},
        "modelVersion": model,
        "responseId": meta.response_id,
    }


def framed(doc: dict[str, Any], *, streaming: bool, sse: bool) -> bytes:
    """One whole response document, framed for the method that was called."""
    body = orjson.dumps(doc)
    if sse:
        return b"data: " + body + SSE_END
    return b"[" + body + b"]" if streaming else body
