"""OpenAI wire ⇄ imagegate: the request into an ImageRequest; the result into OpenAI's answer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from pydantic import ValidationError

from imagegate.core.errors import InvalidRequest
from imagegate.core.geometry import Size, parse_size
from imagegate.core.payload import Piece
from imagegate.core.request import Background, ImageRequest, InputImage, Quality
from imagegate.core.result import GeneratedImage, ImageResult
from imagegate.surfaces.openai.wire import EditRequest, GenerationRequest

MIN_EDGE, MAX_EDGE, MAX_ASPECT = 16, 8192, 8.0
LEGACY_QUALITY = {"standard": Quality.MEDIUM, "hd": Quality.HIGH}


def parse_generation(body: Any, *, max_prompt_chars: int) -> GenerationRequest:
    """The wire request, or InvalidRequest naming the first parameter that is wrong."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        wire = GenerationRequest.model_validate(body)
    except ValidationError as exc:
        raise invalid_from(exc) from None
    check_common(wire, max_prompt_chars=max_prompt_chars)
    return wire


def check_common(wire: GenerationRequest | EditRequest, *, max_prompt_chars: int) -> None:
    if not wire.prompt.strip():
        raise InvalidRequest("`prompt` must not be empty.", param="prompt")
    if len(wire.prompt) > max_prompt_chars:
        raise InvalidRequest(
            f"`prompt` is {len(wire.prompt)} characters; the maximum is {max_prompt_chars}.",
            param="prompt",
        )
    if wire.model is None or not wire.model.strip():
        raise InvalidRequest("you must provide a model parameter", param="model")
    if wire.output_compression is not None and wire.output_format not in ("jpeg", "webp"):
        raise InvalidRequest(
            "`output_compression` applies only with output_format jpeg or webp.",
            param="output_compression",
        )
    if wire.background == "transparent" and wire.output_format == "jpeg":
        raise InvalidRequest(
            "A transparent background needs output_format png or webp; jpeg has no alpha.",
            param="background",
        )


def invalid_from(exc: ValidationError) -> InvalidRequest:
    error = exc.errors()[0]
    param = str(error["loc"][0]) if error["loc"] else None
    if error["type"] == "extra_forbidden":
        return InvalidRequest(f"Unrecognized request argument supplied: {param}", param=param)
    if error["type"] == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    value = error.get("input")
    shown = orjson.dumps(value).decode() if isinstance(value, str | int | float | bool) else ""
    reason = error["msg"][0].lower() + error["msg"][1:]
    return InvalidRequest(
        f"Invalid value {shown} for '{param}': {reason}.".replace("  ", " "), param=param
    )


def parse_size_param(text: str | None) -> Size | None:
    if text is None or text == "auto":
        return None
    size = parse_size(text)
    if size is None:
        raise InvalidRequest(
            f"Invalid value: '{text}'. `size` must be 'auto' or WIDTHxHEIGHT, e.g. '1024x1024',"
            " '1536x1024', '1024x1536'.",
            param="size",
        )
    if not (min(size.width, size.height) >= MIN_EDGE and max(size.width, size.height) <= MAX_EDGE):
        raise InvalidRequest(
            f"Invalid size '{text}': each side must be between {MIN_EDGE} and {MAX_EDGE} pixels.",
            param="size",
        )
    if max(size.aspect, 1 / size.aspect) > MAX_ASPECT:
        raise InvalidRequest(
            f"Invalid size '{text}': the aspect ratio may be at most {MAX_ASPECT:g}:1.",
            param="size",
        )
    return size


# OpenAI-only fields with no unified meaning, forwarded to OpenAI deployments as they are.
GENERATION_PASSTHROUGH = ("moderation", "style", "safety_identifier", "partial_images")


def to_image_request(
    wire: GenerationRequest | EditRequest,
    *,
    request_id: str,
    client_id: str | None,
    deadline: float,
    passthrough_fields: tuple[str, ...] = GENERATION_PASSTHROUGH,
    input_images: tuple[InputImage, ...] = (),
    mask: InputImage | None = None,
) -> ImageRequest:
    """The ImageRequest of a generation or (with its checked images and mask) an edit."""
    quality = wire.quality or "auto"
    passthrough: dict[str, Any] = {
        name: value for name in passthrough_fields if (value := getattr(wire, name)) is not None
    }
    return ImageRequest(
        prompt=wire.prompt,
        model=wire.model or "",
        n=wire.n,
        size=parse_size_param(wire.size),
        quality=LEGACY_QUALITY.get(quality) or Quality(quality),
        output_format=wire.output_format,
        output_compression=wire.output_compression,
        background=Background(wire.background or "auto"),
        input_images=input_images,
        mask=mask,
        user=wire.user,
        client_id=client_id,
        request_id=request_id,
        deadline=deadline,
        passthrough={"openai": passthrough} if passthrough else {},
    )


def answer_tail(result: ImageResult, request: ImageRequest) -> bytes:
    """The fields after `data`: what was made, and the usage (known once the images are read)."""
    first = result.images[0]
    usage = result.total_usage()
    fields: dict[str, Any] = {
        "background": "transparent" if first.has_alpha else "opaque",
        "output_format": first.format,
        "quality": "medium" if request.quality is Quality.AUTO else str(request.quality),
        "size": f"{first.width}x{first.height}",
        "usage": {
            "input_tokens": usage.input_tokens,
            "input_tokens_details": {
                "text_tokens": usage.input_text_tokens,
                "image_tokens": usage.input_image_tokens,
            },
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {
                "text_tokens": usage.output_text_tokens,
                "image_tokens": usage.output_image_tokens,
            },
            "total_tokens": usage.input_tokens + usage.output_tokens,
        },
    }
    return orjson.dumps(fields)[1:]  # without its "{": it continues the answer's object


async def b64_answer(result: ImageResult, request: ImageRequest) -> AsyncIterator[Piece]:
    """The OpenAI answer as pieces, each image's base64 passed through as it arrives."""
    yield b'{"created":%d,"data":[' % int(time.time())
    for index, image in enumerate(result.images):
        yield b'{"b64_json":"' if index == 0 else b'},{"b64_json":"'
        async for chunk in image.source.chunks():
            yield chunk
        yield b'"'
        if index == 0 and result.revised_prompt:
            yield b',"revised_prompt":' + orjson.dumps(result.revised_prompt)
    yield b"}],"
    yield answer_tail(result, request)


def url_answer(result: ImageResult, request: ImageRequest, urls: list[str]) -> bytes:
    data = [{"url": url} for url in urls]
    head = orjson.dumps({"created": int(time.time()), "data": data})
    return head[:-1] + b"," + answer_tail(result, request)


async def sse_answer(
    result: ImageResult, request: ImageRequest, family: str = "image_generation"
) -> AsyncIterator[Piece]:
    """`stream: true`: one `<family>.completed` event per image (partials went out before, as
    they came: surfaces/openai/partials.py).

    `family` is `image_generation` for generations and `image_edit` for edits (reference §7).
    """
    created = int(time.time())
    for image in result.images:
        async for piece in image_event(image, request, f"{family}.completed", created):
            yield piece


async def image_event(
    image: GeneratedImage,
    request: ImageRequest,
    event: str,
    created: int,
    extra: Mapping[str, Any] | None = None,
) -> AsyncIterator[Piece]:
    """One server-sent event carrying an image: its base64 passed through as it arrives."""
    name = event.encode()
    yield b"event: " + name + b'\ndata: {"type":"' + name + b'","b64_json":"'
    async for chunk in image.source.chunks():
        yield chunk
    meta = {
        **(extra or {}),
        "created_at": created,
        "size": f"{image.width}x{image.height}",
        "quality": str(request.quality),
        "background": "transparent" if image.has_alpha else "opaque",
        "output_format": image.format,
    }
    yield b'",' + orjson.dumps(meta)[1:] + b"\n\n"
