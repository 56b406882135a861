"""Gemini generateContent request → ImageRequest (docs/gemini-surface.md).

One request serves whichever provider the route picks, so it carries two views of the
conversation (conversation.py): the prompt and input images every provider understands, and for
Gemini the whole conversation in `passthrough["gemini"]["contents"]`. That list replaces the
contents the Gemini provider would build from the prompt and input images (its `_merge` sets
non-object fields whole), so every image goes upstream once, with its thoughtSignature.

Fields with a unified meaning are mapped (imageConfig, candidateCount, seed); the rest of
generationConfig and the top-level fields go to Gemini as the client wrote them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from imagegate.core.errors import InvalidRequest
from imagegate.core.request import ImageRequest
from imagegate.surfaces.gemini import conversation
from imagegate.surfaces.gemini.wire import GenerateContentRequest, GenerationConfig, ImageConfig

MAX_CANDIDATES = 4  # one image per candidate, fanned out as parallel calls
ASPECT_RATIOS = (
    *("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"),
    *("1:4", "4:1", "1:8", "8:1"),
)
IMAGE_SIZES = ("512", "1K", "2K", "4K")
OUTPUT_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}
_MAPPED_CONFIG = {"candidate_count", "seed", "response_modalities", "image_config"}
_MAPPED_IMAGE_CONFIG = {
    "aspect_ratio",
    "image_size",
    "output_mime_type",
    "output_compression_quality",
}
_CONFIG_PATH = "generation_config"
_IMAGE_CONFIG_PATH = "generation_config.image_config"


@dataclass(frozen=True, slots=True)
class Translation:
    """The ImageRequest, what was normalised on the way (for `x-imagegate-warning`), and
    whether the answer may hold text parts (responseModalities allow TEXT)."""

    request: ImageRequest
    warnings: tuple[str, ...] = ()
    text_wanted: bool = True


def parse_request(body: Any) -> GenerateContentRequest:
    """The wire request, or InvalidRequest naming the field (Google's snake_case path)."""
    if not isinstance(body, dict):
        raise InvalidRequest("Invalid JSON payload received. The body must be a JSON object.")
    try:
        return GenerateContentRequest.model_validate(body)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> InvalidRequest:
    error = exc.errors()[0]
    loc = error["loc"]
    if error["type"] == "extra_forbidden":
        where = field_path(loc[:-1])
        at = f" at '{where}'" if where else ""
        return InvalidRequest(
            f'Invalid JSON payload received. Unknown name "{loc[-1]}"{at}: Cannot find field.',
            param=field_path(loc),
        )
    path = field_path(loc)
    if error["type"] == "missing":
        return InvalidRequest(
            f"* GenerateContentRequest.{path}: {path} is not specified", param=path
        )
    value = error.get("input")
    shown = orjson.dumps(value).decode()[:80] if isinstance(value, str | int | float | bool) else ""
    return InvalidRequest(
        f"Invalid value at '{path}' ({error['msg']}), {shown}".rstrip(", "), param=path
    )


def field_path(loc: Sequence[int | str]) -> str:
    """('contents', 0, 'inlineData') → 'contents[0].inline_data', as Google names fields."""
    path = ""
    for item in loc:
        if isinstance(item, int):
            path += f"[{item}]"
        else:
            path += ("." if path else "") + re.sub(r"[A-Z]", lambda m: "_" + m[0].lower(), item)
    return path


def to_image_request(
    wire: GenerateContentRequest,
    *,
    route: str,
    request_id: str,
    client_id: str | None,
    deadline: float | None,
    idempotency_key: str | None = None,
    max_prompt_chars: int,
) -> Translation:
    contents = wire.contents
    images = conversation.checked_contents(contents)
    prompt = conversation.instruction(contents, max_prompt_chars)
    config = wire.generation_config or GenerationConfig()
    image_config = config.image_config or ImageConfig()
    warnings: list[str] = []
    modalities = _modalities(config.response_modalities, warnings)
    output_format, compression = _output(image_config)
    request = ImageRequest(
        prompt=prompt,
        model=route,
        n=_candidates(config.candidate_count),
        aspect_ratio=_aspect_ratio(image_config.aspect_ratio),
        resolution=_image_size(image_config.image_size, warnings),
        output_format=output_format,
        output_compression=compression,
        seed=config.seed,
        input_images=conversation.input_images(contents, images),
        client_id=client_id,
        request_id=request_id,
        deadline=deadline,
        idempotency_key=idempotency_key,
        passthrough={"gemini": _gemini_passthrough(wire, config, image_config, modalities)},
    )
    return Translation(request, tuple(warnings), modalities is None or "TEXT" in modalities)


# --- generationConfig -------------------------------------------------------------------------


def _candidates(count: int | None) -> int:
    if count is None:
        return 1
    if not 1 <= count <= MAX_CANDIDATES:
        raise InvalidRequest(
            f"candidateCount must be between 1 and {MAX_CANDIDATES} (one image per candidate),"
            f" not {count}.",
            param=f"{_CONFIG_PATH}.candidate_count",
        )
    return count


def _modalities(asked: list[str] | None, warnings: list[str]) -> list[str] | None:
    """responseModalities with IMAGE in it, upper-cased; None when the client sent none.

    Gemini answers 200 with text only when IMAGE is missing: on an image route that is never
    what the client wants, so IMAGE is added and the client told.
    """
    if not asked:
        return None
    names: list[str] = []
    for index, value in enumerate(asked):
        name = value.upper()
        if name not in ("TEXT", "IMAGE", "MODALITY_UNSPECIFIED"):
            raise InvalidRequest(
                f"Invalid value at '{_CONFIG_PATH}.response_modalities[{index}]', {value!r}:"
                " an image route answers with TEXT and IMAGE only.",
                param=f"{_CONFIG_PATH}.response_modalities[{index}]",
            )
        if name not in names and name != "MODALITY_UNSPECIFIED":
            names.append(name)
    if "IMAGE" not in names:
        names.append("IMAGE")
        warnings.append(
            f"responseModalities {orjson.dumps(asked).decode()} normalised to"
            f" {orjson.dumps(names).decode()}: an image route always answers with an image"
        )
    return names


def _aspect_ratio(value: str | None) -> str | None:
    if value is None:
        return None
    if value.strip() not in ASPECT_RATIOS:
        raise InvalidRequest(
            f"Unsupported aspect ratio {value!r}. Supported values: {', '.join(ASPECT_RATIOS)}.",
            param=f"{_IMAGE_CONFIG_PATH}.aspect_ratio",
        )
    return value.strip()


def _image_size(value: str | None, warnings: list[str]) -> str | None:
    if value is None:
        return None
    size = value.strip().upper()
    if size not in IMAGE_SIZES:
        raise InvalidRequest(
            f"Unsupported image size {value!r}. Supported values: {', '.join(IMAGE_SIZES)}.",
            param=f"{_IMAGE_CONFIG_PATH}.image_size",
        )
    if size != value:
        # Gemini takes only the upper-case spelling and answers "1k" at its default size.
        warnings.append(f'imageSize "{value}" normalised to "{size}"')
    return size


def _output(image_config: ImageConfig) -> tuple[str | None, int | None]:
    """Vertex AI's outputMimeType and outputCompressionQuality, honoured by transcoding."""
    mime, quality = image_config.output_mime_type, image_config.output_compression_quality
    output_format = None
    if mime is not None:
        output_format = OUTPUT_FORMATS.get(mime.lower())
        if output_format is None:
            raise InvalidRequest(
                f"Unsupported outputMimeType {mime!r}. Supported values:"
                f" {', '.join(OUTPUT_FORMATS)}.",
                param=f"{_IMAGE_CONFIG_PATH}.output_mime_type",
            )
    if quality is not None and (output_format not in ("jpeg", "webp") or not 0 <= quality <= 100):
        raise InvalidRequest(
            "outputCompressionQuality must be 0 to 100, with outputMimeType image/jpeg or"
            " image/webp.",
            param=f"{_IMAGE_CONFIG_PATH}.output_compression_quality",
        )
    return output_format, quality


# --- what Gemini gets as the client wrote it --------------------------------------------------


def _gemini_passthrough(
    wire: GenerateContentRequest,
    config: GenerationConfig,
    image_config: ImageConfig,
    modalities: list[str] | None,
) -> dict[str, Any]:
    """Everything Gemini-specific, camelCase at the levels the provider also writes.

    The provider deep-merges this over the body it builds, so a snake_case key beside its
    camelCase one would reach Gemini twice, which Gemini rejects as a duplicate field.
    """
    gemini: dict[str, Any] = wire.model_dump(
        by_alias=True, exclude_none=True, exclude={"contents", "generation_config", "model"}
    )
    gemini["contents"] = [conversation.for_gemini(content) for content in wire.contents]
    forwarded: dict[str, Any] = config.model_dump(
        by_alias=True, exclude_none=True, exclude=_MAPPED_CONFIG
    )
    extra_image_config = image_config.model_dump(
        by_alias=True, exclude_none=True, exclude=_MAPPED_IMAGE_CONFIG
    )
    if extra_image_config:
        forwarded["imageConfig"] = extra_image_config
    if modalities is not None:
        forwarded["responseModalities"] = modalities
    if forwarded:
        gemini["generationConfig"] = forwarded
    return gemini
