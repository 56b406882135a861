"""OpenAI's Images API: gpt-image models (shared/reference/openai-images.md).

Sizes: the 1.x models take 1024x1024, 1536x1024 and 1024x1536; gpt-image-2 and later take any
WxH with sides divisible by 16, an aspect within 3:1 and sides up to 3840. GPT image models
always answer in base64, so `response_format` is never sent upstream: the gateway makes URLs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

import aiohttp
import orjson

from imagegate.core.deployment import Capabilities, Deployment, UpstreamKey
from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.request import Background, ImageRequest, Quality
from imagegate.core.result import GeneratedImage, ImageResult, Usage
from imagegate.providers._http import post_for_image, timeout_for
from imagegate.providers.b64_stream import PlainBody, held_images, split_b64_fields
from imagegate.providers.openai_failures import classify_failure

STANDARD_SIZES = ("1024x1024", "1536x1024", "1024x1536")
IMAGE_MARKER = re.compile(rb'"b64_json"\s*:\s*"')
# Fields only OpenAI understands, forwarded from the request's passthrough as they are.
PASSTHROUGH = ("moderation", "style", "safety_identifier", "partial_images")


def capabilities_for(model: str) -> Capabilities:
    arbitrary = model.startswith(("gpt-image-2", "chatgpt-image-2"))
    return Capabilities(
        max_n=10,
        sizes=None if arbitrary else STANDARD_SIZES,
        arbitrary_sizes=arbitrary,
        size_multiple=16 if arbitrary else 1,
        max_aspect=3.0 if arbitrary else None,
        max_edge=3840 if arbitrary else None,
        output_formats=("png", "jpeg", "webp"),
        qualities=("auto", "low", "medium", "high"),
        transparent_background=True,
        max_input_images=16,
        mask=True,
    )


def build_request(request: ImageRequest, deployment: Deployment) -> tuple[str, bytes]:
    body: dict[str, Any] = {
        "model": deployment.model,
        "prompt": request.prompt,
        "n": request.n,
        "size": str(request.size) if request.size is not None else "auto",
    }
    if request.quality is not Quality.AUTO:
        body["quality"] = str(request.quality)
    if request.output_format is not None:
        body["output_format"] = request.output_format
    if request.output_compression is not None:
        body["output_compression"] = request.output_compression
    if request.background is not Background.AUTO:
        body["background"] = str(request.background)
    if request.user is not None:
        body["user"] = request.user
    extra = request.passthrough.get("openai", {})
    body.update({name: extra[name] for name in PASSTHROUGH if name in extra})
    return f"{deployment.base_url}/images/generations", orjson.dumps(body)


def usage_of(usage: Mapping[str, Any]) -> Usage:
    inputs = usage.get("input_tokens_details") or {}
    outputs = usage.get("output_tokens_details") or {}
    output_tokens = int(usage.get("output_tokens") or 0)
    return Usage(
        input_text_tokens=int(inputs.get("text_tokens") or 0),
        input_image_tokens=int(inputs.get("image_tokens") or 0),
        output_image_tokens=int(outputs.get("image_tokens", output_tokens) or 0),
        output_text_tokens=int(outputs.get("text_tokens") or 0),
    )


def parse_skeleton(skeleton: Mapping[str, Any], result: ImageResult) -> None:
    data = skeleton.get("data") or []
    if data and isinstance(data[0], dict) and data[0].get("revised_prompt"):
        result.revised_prompt = str(data[0]["revised_prompt"])
    result.usage = usage_of(skeleton.get("usage") or {})


class OpenAIProvider:
    kind: ClassVar[str] = "openai"
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    needs_key: ClassVar[bool] = True

    def __init__(self, deployment: Deployment, session: aiohttp.ClientSession) -> None:
        self.deployment = deployment
        self.capabilities = capabilities_for(deployment.model)
        self._session = session

    async def generate(self, request: ImageRequest, key: UpstreamKey | None) -> ImageResult:
        url, body = build_request(request, self.deployment)
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key.secret}"
        result = ImageResult(
            images=[],
            provider=self.kind,
            deployment=self.deployment.name,
            model=self.deployment.model,
        )
        read = await post_for_image(
            self._session,
            url,
            body,
            headers,
            timeout=timeout_for(request.deadline, self.deployment.timeout_seconds),
            provider="OpenAI",
            # One image is streamed through; several are read whole and held.
            marker=IMAGE_MARKER if request.n == 1 else None,
            classify=classify_failure,
            on_skeleton=lambda skeleton: _complete(skeleton, result),
        )
        if isinstance(read, PlainBody):
            return _whole_answer(read.body, result)
        info = read.info
        result.images.append(
            GeneratedImage(info.format, info.width, info.height, read.source, info.has_alpha)
        )
        return result


def _whole_answer(body: bytes, result: ImageResult) -> ImageResult:
    skeleton_bytes, slices = split_b64_fields(body, IMAGE_MARKER)
    try:
        skeleton = orjson.loads(skeleton_bytes)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(
            FailureKind.UNAVAILABLE, "OpenAI answered 200 with a body that is not JSON", status=200
        ) from exc
    parse_skeleton(skeleton, result)
    result.images = held_images(slices, "OpenAI")
    if not result.images:
        raise UpstreamError(
            FailureKind.EMPTY, "OpenAI answered 200 with no image in `data`", status=200
        )
    return result


def _complete(skeleton: bytes, result: ImageResult) -> None:
    try:
        parse_skeleton(orjson.loads(skeleton), result)
    except orjson.JSONDecodeError:
        result.notes.append("the upstream answer after the image was unreadable; usage unknown")
