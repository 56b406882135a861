"""OpenAI's Images API: gpt-image models (shared/reference/openai-images.md).

Sizes: the 1.x models take 1024x1024, 1536x1024 and 1024x1536; gpt-image-2 and later take any
WxH with sides divisible by 16, an aspect within 3:1 and sides up to 3840. GPT image models
always answer in base64, so `response_format` is never sent upstream: the gateway makes URLs.
A request with input images is an edit (`/images/edits`, multipart); edits answer in the same
shape as generations, so one parser serves both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import aiohttp
import orjson

from imagegate.core.deployment import Capabilities, Deployment, UpstreamKey
from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.geometry import size_for_tier
from imagegate.core.request import Background, ImageRequest, Quality
from imagegate.core.result import GeneratedImage, ImageResult, Usage
from imagegate.providers._http import post_for_image, timeout_for
from imagegate.providers.b64_stream import PlainBody, held_images, split_b64_fields
from imagegate.providers.multipart import FilePart, encode_multipart, new_boundary
from imagegate.providers.openai_failures import classify_failure
from imagegate.providers.openai_stream import stream_images, wants_partials

STANDARD_SIZES = ("1024x1024", "1536x1024", "1024x1536")
IMAGE_MARKER = re.compile(rb'"b64_json"\s*:\s*"')
# Fields only OpenAI understands, forwarded from the request's passthrough as they are.
PASSTHROUGH = ("moderation", "style", "safety_identifier", "partial_images", "input_fidelity")


# An aspect ratio (from a google-genai client, say) becomes a size. The 1.x models have three
# sizes, so they can honour three ratios at 1K; gpt-image-2 and later make any WxH within
# their rules, so any ratio up to 3:1 at 1K/2K/4K (4K shrunk to the 3840 px side limit).
FIXED_SIZE_BY_RATIO = {"1:1": "1024x1024", "3:2": "1536x1024", "2:3": "1024x1536"}
ARBITRARY_RATIOS = (
    "1:1",
    "2:3",
    "3:2",
    "3:4",
    "4:3",
    "4:5",
    "5:4",
    "9:16",
    "16:9",
    "21:9",
    "1:3",
    "3:1",
)
MAX_EDGE = 3840
MAX_SHORT_EDGE = 2160  # at most 3840x2160 either way


def capabilities_for(model: str) -> Capabilities:
    arbitrary = model.startswith(("gpt-image-2", "chatgpt-image-2"))
    return Capabilities(
        max_n=10,
        sizes=None if arbitrary else STANDARD_SIZES,
        aspect_ratios=ARBITRARY_RATIOS if arbitrary else tuple(FIXED_SIZE_BY_RATIO),
        resolutions=("1K", "2K", "4K") if arbitrary else ("1K",),
        arbitrary_sizes=arbitrary,
        size_multiple=16 if arbitrary else 1,
        max_aspect=3.0 if arbitrary else None,
        max_edge=MAX_EDGE if arbitrary else None,
        max_short_edge=MAX_SHORT_EDGE if arbitrary else None,
        output_formats=("png", "jpeg", "webp"),
        qualities=("auto", "low", "medium", "high"),
        transparent_background=True,
        max_input_images=16,
        mask=True,
    )


def build_generation(request: ImageRequest, deployment: Deployment) -> tuple[str, bytes]:
    """(url, JSON body) of `POST /images/generations`."""
    body = request_fields(request, deployment)
    return f"{deployment.base_url}/images/generations", orjson.dumps(body)


def build_edit(
    request: ImageRequest, deployment: Deployment, boundary: str
) -> tuple[str, bytes, str]:
    """(url, multipart body, content type) of `POST /images/edits` (reference §4)."""
    data, content_type = edit_form(request_fields(request, deployment), request, boundary)
    return f"{deployment.base_url}/images/edits", data, content_type


def edit_form(fields: Mapping[str, Any], request: ImageRequest, boundary: str) -> tuple[bytes, str]:
    """(multipart body, content type) of an edit: `fields` as text parts, then the files.

    One image goes as `image`, several as repeated `image[]`, as the SDK sends them. The mask is
    OpenAI's own convention (alpha 0 = edit), so it is forwarded byte for byte.
    """
    texts = [(name, _text(value)) for name, value in fields.items()]
    name = "image" if len(request.input_images) == 1 else "image[]"
    files = [
        FilePart(name, f"image-{index}.{_extension(image.mime_type)}", image.mime_type, image.data)
        for index, image in enumerate(request.input_images)
    ]
    if request.mask is not None:
        files.append(FilePart("mask", "mask.png", "image/png", request.mask.data))
    return encode_multipart(texts, files, boundary)


def request_fields(request: ImageRequest, deployment: Deployment) -> dict[str, Any]:
    """The fields generations and edits share, plus the passthrough OpenAI-only fields.

    Public for the providers that speak OpenAI's wire under another URL (Azure OpenAI,
    OpenAI-compatible relays): they adjust this dict, then encode it as OpenAI does.
    """
    body: dict[str, Any] = {
        "model": deployment.model,
        "prompt": request.prompt,
        "n": request.n,
        # Explicit `auto` on edits too: SPEC's edit default is 1024x1024, SDK-3.54's is auto.
        "size": size_param(request, deployment),
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
    if wants_partials(request):
        body["stream"] = True  # partial images exist only on a streamed answer
    else:
        body.pop("partial_images", None)  # they would be made and thrown away
    return body


def size_param(request: ImageRequest, deployment: Deployment) -> str:
    """OpenAI's `size`: the pixel size asked for, else one made from aspect ratio and tier."""
    if request.size is not None:
        return str(request.size)
    if request.aspect_ratio is None and request.resolution is None:
        return "auto"
    caps = deployment.capabilities or capabilities_for(deployment.model)
    if caps.arbitrary_sizes:
        size = size_for_tier(
            request.aspect_ratio,
            request.resolution,
            multiple=caps.size_multiple,
            max_edge=caps.max_edge,
            max_pixels=caps.max_pixels,
            max_short_edge=caps.max_short_edge,
        )
        return str(size)
    # The router only sends a fixed-size model the ratios it declares (plan.find_gap).
    return FIXED_SIZE_BY_RATIO[request.aspect_ratio or "1:1"]


def _text(value: Any) -> str:
    """A multipart text field: numbers as digits, booleans as the SDK writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _extension(mime_type: str) -> str:
    return mime_type.removeprefix("image/").replace("jpeg", "jpg")


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
        self.capabilities = deployment.capabilities or capabilities_for(deployment.model)
        self._session = session

    async def generate(self, request: ImageRequest, key: UpstreamKey | None) -> ImageResult:
        if request.input_images:
            url, body, content_type = build_edit(request, self.deployment, new_boundary())
        else:
            url, body = build_generation(request, self.deployment)
            content_type = "application/json"
        headers = {"Content-Type": content_type}
        if key is not None:
            headers["Authorization"] = f"Bearer {key.secret}"
        result = ImageResult(
            images=[],
            provider=self.kind,
            deployment=self.deployment.name,
            model=self.deployment.model,
        )
        if request.partials is not None and wants_partials(request):
            return await stream_images(
                self._session,
                url,
                body,
                headers,
                result,
                request=request,
                sink=request.partials,
                ceiling=self.deployment.timeout_seconds,
                provider="OpenAI",
                classify=classify_failure,
                usage_of=usage_of,
            )
        read = await post_images(
            self._session,
            url,
            body,
            headers,
            result,
            request=request,
            ceiling=self.deployment.timeout_seconds,
            provider="OpenAI",
            classify=classify_failure,
        )
        if isinstance(read, ImageResult):
            return read
        whole_answer(read.body, result, "OpenAI")
        if not result.images:
            raise no_image("OpenAI")
        return result


# --- the shell shared by the providers that speak OpenAI's Images API -------------------------


async def post_images(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    result: ImageResult,
    *,
    request: ImageRequest,
    ceiling: float,
    provider: str,
    classify: Callable[[int, Mapping[str, str], bytes], UpstreamError],
    marker: re.Pattern[bytes] = IMAGE_MARKER,
) -> ImageResult | PlainBody:
    """POST an Images API request. One image is streamed through: `result` comes back holding
    it. Any other 2xx answer (several images, or none) comes back whole, for `whole_answer`."""
    read = await post_for_image(
        session,
        url,
        body,
        headers,
        timeout=timeout_for(request.deadline, ceiling),
        provider=provider,
        # One image is streamed through; several are read whole and held.
        marker=marker if request.n == 1 else None,
        classify=classify,
        on_skeleton=lambda skeleton: _complete(skeleton, result),
    )
    if isinstance(read, PlainBody):
        return read
    info = read.info
    result.images.append(
        GeneratedImage(info.format, info.width, info.height, read.source, info.has_alpha)
    )
    return result


def whole_answer(
    body: bytes, result: ImageResult, provider: str, marker: re.Pattern[bytes] = IMAGE_MARKER
) -> dict[str, Any]:
    """Read a whole 200 answer into `result` (held images, revised prompt, usage) and return its
    skeleton (the answer with the base64 emptied), for callers that look further (URLs)."""
    skeleton_bytes, slices = split_b64_fields(body, marker)
    try:
        skeleton = orjson.loads(skeleton_bytes)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(
            FailureKind.UNAVAILABLE,
            f"{provider} answered 200 with a body that is not JSON",
            status=200,
        ) from exc
    if not isinstance(skeleton, dict):
        raise UpstreamError(
            FailureKind.UNAVAILABLE,
            f"{provider} answered 200 with JSON that is not an object",
            status=200,
        )
    parse_skeleton(skeleton, result)
    result.images = held_images(slices, provider)
    return skeleton


def no_image(provider: str) -> UpstreamError:
    return UpstreamError(
        FailureKind.EMPTY, f"{provider} answered 200 with no image in `data`", status=200
    )


def relabelled(error: UpstreamError, provider: str) -> UpstreamError:
    """`error` (from OpenAI's classify_failure) with its diagnosis naming `provider` instead,
    for upstreams that speak OpenAI's error format under another name (Azure, relays)."""
    return UpstreamError(
        error.kind,
        error.diagnosis.replace("OpenAI", provider),
        status=error.status,
        provider_code=error.provider_code,
        provider_message=error.provider_message,
        retry_after=error.retry_after,
        param=error.param,
    )


def _complete(skeleton: bytes, result: ImageResult) -> None:
    try:
        parse_skeleton(orjson.loads(skeleton), result)
    except orjson.JSONDecodeError:
        result.notes.append("the upstream answer after the image was unreadable; usage unknown")
