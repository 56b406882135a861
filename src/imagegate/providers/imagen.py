"""Imagen's `:predict` wire format, shared by Vertex AI and the Gemini Developer API.

Shapes from shared/reference/vertex-ai.md §4 (Vertex) and gemini-image.md §10 (Developer API,
legacy). One call makes up to 4 images (`sampleCount`) framed by one of five aspect ratios and,
on Imagen 4 Standard and Ultra, a `sampleImageSize` tier (1K/2K). The output format is native
(`outputOptions.mimeType`). An edit (imagen-3.0-capability-001) sends the input image as a RAW
reference and the client's mask as a MASK reference, converted to white = edit.

Filtered images come back as entries holding only `raiFilteredReason`: a call that lost every
image is `safety`; a call that lost some returns the rest, and the router asks again for the
shortfall. The build and parse functions are pure; `predict` is the thin shell both providers
call.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from imagegate.core.deployment import Capabilities, Deployment
from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.geometry import nearest_ratio, tier_for
from imagegate.core.imageinfo import MIME_BY_FORMAT
from imagegate.core.request import ImageRequest, Quality
from imagegate.core.result import GeneratedImage, ImageResult
from imagegate.output.mask import to_white_is_edit
from imagegate.providers._http import post_for_image, timeout_for
from imagegate.providers.b64_stream import ImageHead, held_images, split_b64_fields
from imagegate.providers.quality import unmatched_quality_note

Classify = Callable[[int, Mapping[str, str], bytes], UpstreamError]

ASPECT_RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9")
MAX_N = 4
OUTPUT_FORMATS = ("png", "jpeg")
IMAGE_MARKER = re.compile(rb'"bytesBase64Encoded"\s*:\s*"')
# sampleImageSize applies to Standard and Ultra, not Fast (reference §4, unverified); the
# reference gives Imagen 3 no tiers, so it gets the model's default, 1K.
TWO_K_PREFIXES = ("imagen-4.0-generate", "imagen-4.0-ultra-generate")
EDIT_PREFIX = "imagen-3.0-capability"
DEFAULT_EDIT_MODE = "EDIT_MODE_INPAINT_INSERTION"
USER_MASK = "MASK_MODE_USER_PROVIDED"
# Imagen-only parameters a client may send through the request's passthrough (under the
# provider's kind). The Developer API refuses several of them (seed, negativePrompt,
# addWatermark, enhancePrompt): they are forwarded anyway, and its 400 names the field.
PASSTHROUGH = (
    "negativePrompt",
    "personGeneration",
    "safetySetting",
    "enhancePrompt",
    "language",
    "guidanceScale",
    "addWatermark",
    "includeSafetyAttributes",
    "editMode",
    "editConfig",
)
# Imagen's safety block on Vertex's :predict is a 400, not a filtered entry (reference §5,
# third-party reports, unverified codes); the last phrase is Imagen's prompt refusal (from
# memory of public reports, unverified).
SAFETY_SIGNS = ("58061214", "The response is blocked", "Responsible AI practices")


def is_imagen(model: str) -> bool:
    return model.startswith("imagen-")


def is_edit_model(model: str) -> bool:
    return model.startswith(EDIT_PREFIX)


# Imagen's sizes only approach their ratios: 896x1280 for 3:4 is 6.7 % narrow (Vertex's docs).
IMAGEN_ASPECT_TOLERANCE = 0.08


def capabilities_for(model: str, *, vertex: bool) -> Capabilities:
    """Defaults for an Imagen model; the catalog's entry wins when there is one."""
    edit = is_edit_model(model)
    return Capabilities(
        max_n=MAX_N,
        aspect_ratios=ASPECT_RATIOS,
        resolutions=("1K", "2K") if model.startswith(TWO_K_PREFIXES) else ("1K",),
        output_formats=OUTPUT_FORMATS,
        # No quality knob: high asks for the 2K tier where the model has one (as on Gemini).
        qualities=("auto", "low", "medium", "high"),
        max_input_images=1 if edit else 0,
        mask=edit,
        seed=vertex,  # the Developer API refuses `seed` (reference §10)
        aspect_tolerance=IMAGEN_ASPECT_TOLERANCE,
    )


# --- the request ------------------------------------------------------------------------------


def build_predict(
    request: ImageRequest, deployment: Deployment, caps: Capabilities, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """The `:predict` body. `extra` is the request's passthrough for this provider kind.

    With a mask this decodes pixels (the mask's conversion): call it off the event loop then.
    """
    parameters: dict[str, Any] = {"sampleCount": request.n, "includeRaiReason": True}
    ratio, tier = framing(request, caps)
    if ratio is not None:
        parameters["aspectRatio"] = ratio
    if tier is not None:
        parameters["sampleImageSize"] = tier
    if request.seed is not None:
        # Vertex refuses a seed while the invisible watermark is on (reference §4).
        parameters["seed"] = request.seed
        parameters["addWatermark"] = False
    if request.output_format is not None:
        parameters["outputOptions"] = output_options(request.output_format, request)
    parameters.update({name: extra[name] for name in PASSTHROUGH if name in extra})
    instance: dict[str, Any] = {"prompt": request.prompt}
    if request.input_images:
        instance["referenceImages"] = references(request, extra)
        if len(instance["referenceImages"]) > 1:  # a mask: the edit mode says what to do there
            default = deployment.options.get("edit_mode", DEFAULT_EDIT_MODE)
            parameters.setdefault("editMode", default)
    return {"instances": [instance], "parameters": parameters}


def framing(request: ImageRequest, caps: Capabilities) -> tuple[str | None, str | None]:
    """(aspectRatio, sampleImageSize): a pixel size becomes the nearest ratio and tier."""
    tiers = caps.resolutions or ("1K",)
    ratio: str | None
    if request.size is not None:
        ratio = nearest_ratio(request.size.aspect, caps.aspect_ratios or ASPECT_RATIOS)
        tier: str | None = tier_for(request.size, tiers)
    else:
        ratio = request.aspect_ratio
        tier = request.resolution
        if tier is None and request.quality is Quality.HIGH and "2K" in tiers:
            tier = "2K"
    if tiers == ("1K",):
        tier = None  # Fast and Imagen 3 take no sampleImageSize; 1K is what they make
    return ratio, tier


def output_options(fmt: str, request: ImageRequest) -> dict[str, Any]:
    options: dict[str, Any] = {"mimeType": MIME_BY_FORMAT[fmt]}
    if fmt == "jpeg" and request.output_compression is not None:
        options["compressionQuality"] = request.output_compression
    return options


def references(request: ImageRequest, extra: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The RAW reference (the image to edit) and, for a masked edit, the MASK reference.

    The client's mask becomes a user-provided mask, white = edit. Without one, a passthrough
    `maskImageConfig` with an automatic mode (MASK_MODE_BACKGROUND, _FOREGROUND, _SEMANTIC with
    `maskClasses`) asks Imagen to make the mask itself, so the reference carries no image.
    """
    first = request.input_images[0]
    refs: list[dict[str, Any]] = [
        {
            "referenceType": "REFERENCE_TYPE_RAW",
            "referenceId": 1,
            "referenceImage": {"bytesBase64Encoded": _b64(first.data), "mimeType": first.mime_type},
        }
    ]
    config = dict(extra.get("maskImageConfig") or {})
    if request.mask is not None:
        config["maskMode"] = USER_MASK
        image = {"bytesBase64Encoded": _b64(to_white_is_edit(request.mask.data))}
        refs.append(_mask_reference(config, {**image, "mimeType": "image/png"}))
    elif config.get("maskMode") not in (None, USER_MASK):
        refs.append(_mask_reference(config, None))
    return refs


def _mask_reference(config: dict[str, Any], image: dict[str, Any] | None) -> dict[str, Any]:
    ref: dict[str, Any] = {"referenceType": "REFERENCE_TYPE_MASK", "referenceId": 2}
    if image is not None:
        ref["referenceImage"] = image
    ref["maskImageConfig"] = config
    return ref


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- the answer -------------------------------------------------------------------------------


def parse_skeleton(skeleton: Mapping[str, Any], result: ImageResult) -> list[str]:
    """Fill `result` from the answer's JSON (image strings emptied); the filtered reasons."""
    predictions = [p for p in skeleton.get("predictions") or [] if isinstance(p, dict)]
    enhanced = [str(p["prompt"]) for p in predictions if p.get("prompt")]
    if enhanced:
        result.revised_prompt = enhanced[0]  # Imagen's rewrite of the prompt (enhancePrompt)
    return [str(p["raiFilteredReason"]) for p in predictions if p.get("raiFilteredReason")]


def whole_answer(body: bytes, result: ImageResult, provider: str) -> ImageResult:
    """`result` with the images of a whole `:predict` answer; raises when none is left."""
    skeleton_bytes, slices = split_b64_fields(body, IMAGE_MARKER)
    try:
        skeleton = orjson.loads(skeleton_bytes)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(
            FailureKind.UNAVAILABLE,
            f"{provider} answered 200 with a body that is not JSON",
            status=200,
            provider_message=body[:300].decode("utf-8", "replace"),
        ) from exc
    filtered = parse_skeleton(skeleton if isinstance(skeleton, dict) else {}, result)
    result.images = held_images(slices, provider)
    if not result.images:
        raise no_image_failure(filtered, provider)
    if filtered:
        result.notes.append(
            f"Imagen's safety filter withheld {len(filtered)} image(s): {filtered[0][:200]}"
        )
    return result


def no_image_failure(filtered: list[str], provider: str) -> UpstreamError:
    if filtered:
        return UpstreamError(
            FailureKind.SAFETY,
            f"{provider}'s Imagen safety filter withheld every image ({filtered[0][:200]});"
            " rephrase the prompt, or relax safetySetting/personGeneration where allowed",
            status=200,
            provider_code="raiFilteredReason",
            provider_message=filtered[0],
        )
    return UpstreamError(
        FailureKind.EMPTY,
        f"{provider} answered 200 without an image (no predictions; Imagen drops filtered"
        " images silently unless includeRaiReason is set)",
        status=200,
    )


def safety_block(status: int, body: bytes) -> UpstreamError | None:
    """Imagen's safety refusal sent as an HTTP 400, if this is one."""
    if status != 400:
        return None
    text = body[:4000].decode("utf-8", "replace")
    if not any(sign in text for sign in SAFETY_SIGNS):
        return None
    try:
        message = str(orjson.loads(body)["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = text
    return UpstreamError(
        FailureKind.SAFETY,
        "Imagen blocked the request or its images for safety reasons; rephrase the prompt",
        status=status,
        provider_code="58061214" if "58061214" in message else "INVALID_ARGUMENT",
        provider_message=message,
    )


def with_safety(classify: Classify) -> Classify:
    """`classify` with Imagen's safety 400 recognised first."""

    def classify_predict(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return safety_block(status, body) or classify(status, headers, body)

    return classify_predict


# --- the call ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PredictCall:
    """Who is calling: the provider kind (the result's provider, the passthrough's key), the
    name diagnoses use, and the provider's failure classifier."""

    kind: str
    provider: str
    classify: Classify


async def predict(
    session: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str],
    request: ImageRequest,
    deployment: Deployment,
    caps: Capabilities,
    call: PredictCall,
) -> ImageResult:
    """One `:predict` call for `request.n` images (at most MAX_N)."""
    extra = request.passthrough.get(call.kind, {})
    if request.input_images:  # megabytes of base64 and the mask's conversion: off the loop
        body = await asyncio.to_thread(_encoded, request, deployment, caps, extra)
    else:
        body = _encoded(request, deployment, caps, extra)
    result = ImageResult(
        images=[], provider=call.kind, deployment=deployment.name, model=deployment.model
    )
    if (note := unmatched_quality_note(request)) is not None:
        result.notes.append(note)
    read = await post_for_image(
        session,
        url,
        body,
        headers,
        timeout=timeout_for(request.deadline, deployment.timeout_seconds),
        provider=call.provider,
        # One image is streamed through; several are read whole and held.
        marker=IMAGE_MARKER if request.n == 1 else None,
        classify=with_safety(call.classify),
        on_skeleton=lambda skeleton: _complete(skeleton, result),
    )
    if isinstance(read, ImageHead):
        info = read.info
        result.images.append(
            GeneratedImage(info.format, info.width, info.height, read.source, info.has_alpha)
        )
        return result
    return whole_answer(read.body, result, call.provider)


def _encoded(
    request: ImageRequest, deployment: Deployment, caps: Capabilities, extra: Mapping[str, Any]
) -> bytes:
    return orjson.dumps(build_predict(request, deployment, caps, extra))


def _complete(skeleton: bytes, result: ImageResult) -> None:
    try:
        parsed = orjson.loads(skeleton)
    except orjson.JSONDecodeError:
        result.notes.append("the upstream answer after the image was unreadable")
        return
    if isinstance(parsed, dict):
        parse_skeleton(parsed, result)
