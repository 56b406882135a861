"""Gemini Developer API image models through generateContent (shared/reference/gemini-image.md).

Gemini has no `n`, no pixel size and no output format: the router fans n out as parallel calls,
a pixel size becomes the nearest aspectRatio plus an imageSize tier, and the gateway transcodes
when another format was asked for. responseModalities always includes IMAGE, because Gemini
answers 200 with text only when it does not. Input images are inlineData parts; Gemini has no
mask, so the gateway applies one itself (gemini_mask.py). Models named `imagen-*` go to Imagen's
legacy `:predict` instead (imagen.py, reference §10).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import aiohttp
import orjson

from imagegate.core.deployment import Capabilities, Deployment, UpstreamKey
from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.geometry import nearest_ratio, tier_for
from imagegate.core.request import ImageRequest, Quality
from imagegate.core.result import GeneratedImage, ImageResult, Usage
from imagegate.providers import imagen
from imagegate.providers._http import post_for_image, timeout_for
from imagegate.providers.b64_stream import ImageHead, held_images, split_b64_fields
from imagegate.providers.gemini_failures import classify_failure, classify_no_image
from imagegate.providers.gemini_mask import keep_unmasked, mask_parts, masked_geometry
from imagegate.providers.quality import unmatched_quality_note

RATIOS_10 = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
RATIOS_14 = (*RATIOS_10, "1:4", "4:1", "1:8", "8:1")
# Per model: aspect ratios and imageSize tiers. 2.5 Flash Image has no imageSize (always ~1K).
MODELS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "gemini-2.5-flash-image": (RATIOS_10, ("1K",)),
    "gemini-2.5-flash-image-preview": (RATIOS_10, ("1K",)),
    "gemini-3-pro-image-preview": (RATIOS_10, ("1K", "2K", "4K")),
    "gemini-3-pro-image": (RATIOS_10, ("1K", "2K", "4K")),
    "gemini-3.1-flash-image-preview": (RATIOS_14, ("512", "1K", "2K", "4K")),
    "gemini-3.1-flash-image": (RATIOS_14, ("512", "1K", "2K", "4K")),
}
DEFAULT_MODEL_TRAITS = (RATIOS_10, ("1K", "2K", "4K"))
# The inline image's base64: `"data": "` inside inlineData (or inline_data).
IMAGE_MARKER = re.compile(rb'"data"\s*:\s*"')
MODALITIES = ["TEXT", "IMAGE"]
Classify = Callable[[int, Mapping[str, str], bytes], UpstreamError]


# Input images per request. 3 Pro and 3.1 Flash take up to 14 reference images (reference §2,
# unverified); Google's docs say 2.5 Flash Image works best with up to 3. Models not listed get
# the conservative 3.
MAX_INPUT_IMAGES = {
    "gemini-3-pro-image-preview": 14,
    "gemini-3-pro-image": 14,
    "gemini-3.1-flash-image-preview": 14,
    "gemini-3.1-flash-image": 14,
}
DEFAULT_MAX_INPUT_IMAGES = 3


def capabilities_for(model: str) -> Capabilities:
    if imagen.is_imagen(model):
        return imagen.capabilities_for(model, vertex=False)
    ratios, tiers = MODELS.get(model, DEFAULT_MODEL_TRAITS)
    return Capabilities(
        max_n=1,
        aspect_ratios=ratios,
        resolutions=tiers,
        output_formats=("png",),
        qualities=("auto", "low", "medium", "high"),
        max_input_images=MAX_INPUT_IMAGES.get(model, DEFAULT_MAX_INPUT_IMAGES),
        seed=True,  # best effort
        mask=True,  # not Gemini's own: applied by the method in gemini_mask.py
    )


def build_request(request: ImageRequest, deployment: Deployment) -> tuple[str, bytes]:
    """(url, JSON body) of the generateContent call for one image.

    Input images follow the prompt as inlineData parts; a mask adds its instruction and its
    black/white image after them (gemini_mask.py). With a mask this decodes pixels: call it off
    the event loop then.
    """
    url = f"{deployment.base_url}/models/{deployment.model}:generateContent"
    return url, orjson.dumps(request_body(request, deployment))


def request_body(
    request: ImageRequest, deployment: Deployment, passthrough: tuple[str, ...] = ("gemini",)
) -> dict[str, Any]:
    """The generateContent body, with the request's passthrough fields of these provider kinds
    merged over it in order (Vertex AI speaks the same proto and adds its own)."""
    caps = deployment.capabilities or capabilities_for(deployment.model)
    image_config: dict[str, str] = {}
    tier: str | None
    if request.size is not None:
        image_config["aspectRatio"] = nearest_ratio(request.size.aspect, caps.aspect_ratios or ())
        tier = tier_for(request.size, caps.resolutions or ("1K",))
    elif (framing := masked_geometry(request, caps)) is not None:
        image_config["aspectRatio"], tier = framing
    else:
        if request.aspect_ratio is not None:
            image_config["aspectRatio"] = request.aspect_ratio
        tier = request.resolution or _tier_for_quality(request.quality, caps)
    # 2.5 Flash Image takes no imageSize; sending one would be silently ignored at best.
    if tier is not None and caps.resolutions != ("1K",):
        image_config["imageSize"] = tier
    parts: list[dict[str, Any]] = [{"text": request.prompt}]
    for image in request.input_images:
        parts.append({"inlineData": {"mimeType": image.mime_type, "data": _b64(image.data)}})
    parts += mask_parts(request, caps)
    config: dict[str, Any] = {"responseModalities": MODALITIES}
    if image_config:
        config["imageConfig"] = image_config
    if request.seed is not None:
        config["seed"] = request.seed
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": parts}],
        "generationConfig": config,
    }
    for kind in passthrough:
        _merge(body, request.passthrough.get(kind, {}))
    return body


def sent_modalities(request: ImageRequest) -> list[str]:
    config = _field(request.passthrough.get("gemini", {}), "generationConfig", "generation_config")
    modalities = _field(config or {}, "responseModalities", "response_modalities")
    return [str(m) for m in modalities] if modalities is not None else MODALITIES


def _tier_for_quality(quality: Quality, caps: Capabilities) -> str | None:
    if quality is Quality.HIGH and caps.resolutions and "2K" in caps.resolutions:
        return "2K"
    return None  # the model's default, 1K


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Deep-merge passthrough fields into the body: explicit client fields win."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def repair_for_empty(request: ImageRequest) -> tuple[ImageRequest, str] | None:
    """The request with the known causes of an image-less 200 fixed, and what was fixed.

    Gemini answers 200 with text only when responseModalities lacks IMAGE (and older image models
    when it lacks TEXT), and silently falls back to a default size for a lowercase imageSize. The
    gateway sends neither itself; they arrive through the client's passthrough fields.
    """
    extra = request.passthrough.get("gemini", {})
    config = dict(_field(extra, "generationConfig", "generation_config") or {})
    fixes: list[str] = []
    modalities = _field(config, "responseModalities", "response_modalities")
    if modalities is not None and sorted(str(m).upper() for m in modalities) != ["IMAGE", "TEXT"]:
        config.pop("response_modalities", None)
        config["responseModalities"] = MODALITIES
        fixes.append(f"responseModalities {list(modalities)} → {MODALITIES}")
    image_config = dict(_field(config, "imageConfig", "image_config") or {})
    size = _field(image_config, "imageSize", "image_size")
    if isinstance(size, str) and size != size.upper():
        image_config.pop("image_size", None)
        image_config["imageSize"] = size.upper()
        config.pop("image_config", None)
        config["imageConfig"] = image_config
        fixes.append(f"imageSize {size!r} → {size.upper()!r}")
    if not fixes:
        return None
    gemini = {k: v for k, v in extra.items() if k != "generation_config"}
    gemini["generationConfig"] = config
    passthrough = {**request.passthrough, "gemini": gemini}
    return dataclasses.replace(request, passthrough=passthrough), "; ".join(fixes)


def _field(mapping: Mapping[str, Any], camel: str, snake: str) -> Any:
    return mapping.get(camel, mapping.get(snake))


def parse_skeleton(skeleton: Mapping[str, Any], result: ImageResult) -> None:
    """Fill `result`'s text and usage from the answer's JSON (its image strings emptied)."""
    candidates = skeleton.get("candidates") or []
    if candidates:
        parts = (candidates[0].get("content") or {}).get("parts") or []
        texts = [p["text"] for p in parts if "text" in p and not p.get("thought")]
        result.text = "".join(texts) or None
    result.usage = usage_of(skeleton.get("usageMetadata") or {})


def usage_of(meta: Mapping[str, Any]) -> Usage:
    usage = Usage()
    for detail in meta.get("promptTokensDetails") or []:
        if detail.get("modality") == "IMAGE":
            usage.input_image_tokens += int(detail.get("tokenCount") or 0)
        else:
            usage.input_text_tokens += int(detail.get("tokenCount") or 0)
    for detail in meta.get("candidatesTokensDetails") or []:
        if detail.get("modality") == "IMAGE":
            usage.output_image_tokens += int(detail.get("tokenCount") or 0)
        else:
            usage.output_text_tokens += int(detail.get("tokenCount") or 0)
    usage.output_text_tokens += int(meta.get("thoughtsTokenCount") or 0)
    if not usage.input_tokens:
        usage.input_text_tokens = int(meta.get("promptTokenCount") or 0)
    return usage


class GeminiProvider:
    kind: ClassVar[str] = "gemini"
    default_base_url: ClassVar[str] = "https://generativelanguage.googleapis.com/v1beta"
    needs_key: ClassVar[bool] = True

    def __init__(self, deployment: Deployment, session: aiohttp.ClientSession) -> None:
        self.deployment = deployment
        self.capabilities = deployment.capabilities or capabilities_for(deployment.model)
        self._session = session

    async def generate(self, request: ImageRequest, key: UpstreamKey | None) -> ImageResult:
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["x-goog-api-key"] = key.secret
        if imagen.is_imagen(self.deployment.model):  # Imagen's legacy :predict (reference §10)
            url = f"{self.deployment.base_url}/models/{self.deployment.model}:predict"
            call = imagen.PredictCall(self.kind, "Gemini", classify_failure)
            return await imagen.predict(
                self._session, url, headers, request, self.deployment, self.capabilities, call
            )
        if not request.input_images:
            built = build_request(request, self.deployment)
        else:
            # Base64 of megabytes of input images, and the mask's conversion: CPU work, off
            # the loop.
            built = await asyncio.to_thread(build_request, request, self.deployment)
        url, body = built
        result = await send_generate(
            self._session,
            url,
            body,
            headers,
            request,
            self._empty_result(),
            timeout_seconds=self.deployment.timeout_seconds,
            provider="Gemini",
        )
        if request.mask is None:
            return result
        try:
            await keep_unmasked(result, request, self.capabilities)
        except BaseException:
            await result.aclose()
            raise
        return result

    def _empty_result(self) -> ImageResult:
        return ImageResult(
            images=[],
            provider=self.kind,
            deployment=self.deployment.name,
            model=self.deployment.model,
        )


async def send_generate(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    request: ImageRequest,
    result: ImageResult,
    *,
    timeout_seconds: float,
    provider: str,
    classify: Classify = classify_failure,
) -> ImageResult:
    """POST one generateContent call and fill `result` with its image, text and usage.

    Shared with Vertex AI, whose answers are the same proto: only the URL, the headers and the
    failure classifier differ.
    """
    if (note := unmatched_quality_note(request)) is not None:
        result.notes.append(note)
    read = await post_for_image(
        session,
        url,
        body,
        headers,
        timeout=timeout_for(request.deadline, timeout_seconds),
        provider=provider,
        marker=IMAGE_MARKER,
        classify=classify,
        on_skeleton=lambda skeleton: _complete(skeleton, result),
    )
    if isinstance(read, ImageHead):
        info = read.info
        result.images.append(
            GeneratedImage(info.format, info.width, info.height, read.source, info.has_alpha)
        )
        return result
    return _whole_answer(read.body, result, request, provider, classify)


def _whole_answer(
    body: bytes,
    result: ImageResult,
    request: ImageRequest,
    provider: str,
    classify: Classify,
) -> ImageResult:
    skeleton_bytes, slices = split_b64_fields(body, IMAGE_MARKER)
    try:
        skeleton = orjson.loads(skeleton_bytes)
    except orjson.JSONDecodeError as exc:
        raise classify(200, {}, body) from exc
    parse_skeleton(skeleton, result)
    result.images = held_images(slices, provider)
    if not result.images:
        error = classify_no_image(skeleton, sent_modalities(request))
        if error.kind is FailureKind.EMPTY and (fix := repair_for_empty(request)) is not None:
            error.repair, error.repair_note = fix
        raise error
    return result


def _complete(skeleton: bytes, result: ImageResult) -> None:
    try:
        parse_skeleton(orjson.loads(skeleton), result)
    except orjson.JSONDecodeError:
        result.notes.append("the upstream answer after the image was unreadable; usage unknown")
