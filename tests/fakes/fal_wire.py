"""fal's wire format for FakeFal, pure: the apps it serves, input validation, answer documents.

Facts from shared/reference/fal-replicate.md and fal's model pages (docs.fal.ai): the image_size
presets and their pixels, each app's fields. What fal does not publish is marked "our choice".
Input errors are fal's FastAPI list, `{"detail": [{"loc", "msg", "type", "url"}]}`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError

from tests.fakes.gemini_wire import PIXELS_1K, pixel_size
from tests.fakes.images import ImageFormat

Geometry = Literal["pixels", "size_names", "aspect", "input"]
ERRORS_URL = "https://docs.fal.ai/errors"
# docs.fal.ai "Common Model Arguments".
PRESET_PIXELS: Mapping[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
GEMINI_RATIOS = ("21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16")
OPENAI_SIZES = ("1024x1024", "1536x1024", "1024x1536")


@dataclass(frozen=True, slots=True)
class FalApp:
    """One app (endpoint) the fake serves, with the input fields it accepts."""

    id: str
    geometry: Geometry
    images: Literal["image_url", "image_urls"] | None = None  # None: text to image only
    mask: bool = False  # takes (and needs) mask_url
    max_input_images: int = 0
    max_n: int = 1  # 1: no num_images field
    formats: tuple[ImageFormat, ...] = ("jpeg", "png")
    default_format: ImageFormat = "jpeg"
    resolutions: tuple[str, ...] = ()  # aspect apps with a resolution field
    openai_fields: bool = False  # quality, background (transparent output)
    max_side: int = 2048  # our choice: fal publishes no limit for most apps
    nsfw_flags: bool = True  # answers has_nsfw_concepts


def _flux2(name: str) -> tuple[FalApp, FalApp]:
    return (
        FalApp(f"fal-ai/{name}", "pixels"),
        FalApp(f"fal-ai/{name}/edit", "pixels", images="image_urls", max_input_images=8),
    )


def _banana(name: str, resolutions: tuple[str, ...], inputs: int) -> tuple[FalApp, FalApp]:
    common: dict[str, Any] = {
        "max_n": 4,
        "formats": ("jpeg", "png", "webp"),
        "default_format": "png",
        "resolutions": resolutions,
        "nsfw_flags": False,
    }
    return (
        FalApp(f"fal-ai/{name}", "aspect", **common),
        FalApp(
            f"fal-ai/{name}/edit",
            "aspect",
            images="image_urls",
            max_input_images=inputs,
            **common,
        ),
    )


def _gpt(name: str) -> tuple[FalApp, FalApp]:
    common: dict[str, Any] = {
        "max_n": 4,
        "formats": ("jpeg", "png", "webp"),
        "default_format": "png",
        "openai_fields": True,
        "nsfw_flags": False,
    }
    return (
        FalApp(f"fal-ai/{name}", "size_names", **common),
        FalApp(
            f"fal-ai/{name}/edit", "size_names", images="image_urls", max_input_images=16, **common
        ),
    )


APPS: Mapping[str, FalApp] = {
    app.id: app
    for app in (
        *_flux2("flux-2-pro"),
        *_flux2("flux-2-max"),
        *_flux2("flux-2-flex"),
        FalApp("fal-ai/flux/dev", "pixels", max_n=4),
        FalApp("fal-ai/flux/schnell", "pixels", max_n=4),
        FalApp(
            "fal-ai/flux/dev/image-to-image",
            "input",
            images="image_url",
            max_input_images=1,
            max_n=4,
        ),
        FalApp(
            "fal-ai/flux-lora/inpainting",
            "pixels",
            images="image_url",
            mask=True,
            max_input_images=1,
            max_n=4,
        ),
        *_banana("nano-banana", (), 3),
        *_banana("nano-banana-pro", ("1K", "2K", "4K"), 14),
        *_gpt("gpt-image-1.5"),
    )
}


def app_for_path(path: str) -> tuple[FalApp | None, str]:
    """The app a submit path names, and its queue root `{owner}/{alias}` (subpath dropped)."""
    app_id = path.strip("/")
    parts = app_id.split("/")
    return APPS.get(app_id), "/".join(parts[:2])


class InputError(Exception):
    """The input fails validation: answered 422 with fal's FastAPI list."""

    def __init__(self, field: str, msg: str, error_type: str = "value_error") -> None:
        super().__init__(msg)
        self.item = {
            "loc": ["body", field],
            "msg": msg,
            "type": error_type,
            "url": f"{ERRORS_URL}#{error_type}",
        }


@dataclass(frozen=True, slots=True)
class Job:
    """A valid submit, as the fake will answer it."""

    prompt: str
    width: int
    height: int
    fmt: ImageFormat
    n: int
    seed: int | None
    transparent: bool
    sync_mode: bool
    input_images: tuple[bytes, ...]
    mask: bytes | None


def parse_input(app: FalApp, body: Mapping[str, Any]) -> Job:
    """Validate a submit's input the way the app's schema does; raises InputError."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("prompt", "field required", "missing")
    images = _input_images(app, body)
    mask = _mask(app, body, images)
    n = _integer(body, "num_images", 1, 1, app.max_n)
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise InputError("seed", "value is not a valid integer", "int_type")
    fmt = body.get("output_format", app.default_format)
    if fmt not in app.formats:
        raise InputError("output_format", f"must be one of {', '.join(app.formats)}", "enum")
    for flag in ("enable_safety_checker", "sync_mode"):
        if flag in body and not isinstance(body[flag], bool):
            raise InputError(flag, "value is not a valid boolean", "bool_type")
    transparent = _background(app, body) == "transparent" and fmt != "jpeg"
    width, height = output_size(app, body, images)
    return Job(
        prompt=prompt,
        width=width,
        height=height,
        fmt=fmt,
        n=n,
        seed=seed,
        transparent=transparent,
        sync_mode=bool(body.get("sync_mode", False)),
        input_images=tuple(images),
        mask=mask,
    )


def output_size(app: FalApp, body: Mapping[str, Any], images: Sequence[bytes]) -> tuple[int, int]:
    """The pixel size the app makes for this input."""
    first = image_size_of(images[0]) if images else None
    if app.geometry == "input":
        assert first is not None
        return first
    if app.geometry == "size_names":
        return _named_size(app, body.get("image_size"))
    if app.geometry == "aspect":
        return _aspect_size(app, body, first)
    size = body.get("image_size")
    if size is None or size == "auto":
        if size == "auto" and not app.images:
            raise InputError("image_size", "auto needs an input image", "enum")
        # Text to image defaults to landscape_4_3 (FLUX pages); edits follow the first input.
        return first if first is not None else PRESET_PIXELS["landscape_4_3"]
    if isinstance(size, str):
        if size not in PRESET_PIXELS:
            raise InputError("image_size", f"must be one of {', '.join(PRESET_PIXELS)}", "enum")
        return PRESET_PIXELS[size]
    if not isinstance(size, dict):
        raise InputError("image_size", "must be a preset name or an object", "type_error")
    width, height = size.get("width"), size.get("height")
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InputError("image_size", f"{name} is not a valid integer", "int_type")
        if not 64 <= value <= app.max_side:
            raise InputError("image_size", f"{name} must be 64..{app.max_side}", "less_than_equal")
    assert isinstance(width, int) and isinstance(height, int)
    return width, height


def _named_size(app: FalApp, size: Any) -> tuple[int, int]:
    if size is None or (size == "auto" and app.images):
        return 1024, 1024  # our choice for auto: OpenAI's square
    if size not in OPENAI_SIZES:
        raise InputError("image_size", f"must be one of {', '.join(OPENAI_SIZES)}", "enum")
    width, _, height = str(size).partition("x")
    return int(width), int(height)


def _aspect_size(
    app: FalApp, body: Mapping[str, Any], first: tuple[int, int] | None
) -> tuple[int, int]:
    ratio = body.get("aspect_ratio")
    if ratio is None or (ratio == "auto" and app.images):
        ratio = _nearest_ratio(first) if first is not None else "1:1"
    elif ratio not in GEMINI_RATIOS:
        raise InputError("aspect_ratio", f"must be one of {', '.join(GEMINI_RATIOS)}", "enum")
    tier = body.get("resolution", "1K")
    if "resolution" in body and tier not in app.resolutions:
        raise InputError("resolution", "unknown resolution for this model", "enum")
    return pixel_size(str(ratio), str(tier))


def _nearest_ratio(size: tuple[int, int]) -> str:
    aspect = size[0] / size[1]
    return min(GEMINI_RATIOS, key=lambda r: abs(PIXELS_1K[r][0] / PIXELS_1K[r][1] - aspect))


def _background(app: FalApp, body: Mapping[str, Any]) -> str:
    if not app.openai_fields:
        return "auto"
    quality = body.get("quality", "high")
    if quality not in ("low", "medium", "high"):
        raise InputError("quality", "must be one of low, medium, high", "enum")
    background = body.get("background", "auto")
    if background not in ("auto", "transparent", "opaque"):
        raise InputError("background", "must be one of auto, transparent, opaque", "enum")
    return str(background)


def _integer(body: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(name, "value is not a valid integer", "int_type")
    if not low <= value <= high:
        raise InputError(name, f"must be between {low} and {high}", "less_than_equal")
    return value


def _input_images(app: FalApp, body: Mapping[str, Any]) -> list[bytes]:
    if app.images is None:
        return []
    raw = body.get(app.images)
    if raw is None:
        raise InputError(app.images, "field required", "missing")
    urls = raw if app.images == "image_urls" else [raw]
    if not isinstance(urls, list) or not urls:
        raise InputError(app.images, "must be a non-empty list of URLs", "list_type")
    if len(urls) > app.max_input_images:
        raise InputError(app.images, f"at most {app.max_input_images} images", "too_long")
    return [decode_data_uri(url, app.images) for url in urls]


def _mask(app: FalApp, body: Mapping[str, Any], images: Sequence[bytes]) -> bytes | None:
    if not app.mask:
        return None
    mask = decode_data_uri(body.get("mask_url"), "mask_url")
    if image_size_of(mask) != image_size_of(images[0]):
        # The app says the mask "needs to match the dimensions of the input image".
        raise InputError("mask_url", "the mask must have the input image's dimensions")
    return mask


def decode_data_uri(url: Any, field: str) -> bytes:
    """The bytes of a `data:...;base64,` URI; the fake cannot download http URLs (our choice)."""
    if not isinstance(url, str):
        raise InputError(field, "must be a URL", "string_type")
    head, _, payload = url.partition(",")
    if not head.startswith("data:") or ";base64" not in head:
        raise InputError(field, "the fake takes data: URIs only", "file_download_error")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(field, "the data URI is not valid base64", "image_load_error") from None
    image_size_of(data, field)
    return data


def image_size_of(data: bytes, field: str = "image_url") -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError):
        raise InputError(field, "the file is not an image", "image_load_error") from None


@functools.lru_cache(maxsize=16)
def black_image(width: int, height: int, fmt: ImageFormat) -> bytes:
    """What fal returns for an image its safety checker flagged: all black."""
    out = io.BytesIO()
    Image.new("RGB", (width, height)).save(out, {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt])
    return out.getvalue()


# --- documents ------------------------------------------------------------------------------


def queue_urls(base: str, root: str, request_id: str) -> dict[str, str]:
    """The queue's URLs: under `{owner}/{alias}` only, whatever subpath was submitted to."""
    response = f"{base}/{root}/requests/{request_id}"
    return {
        "request_id": request_id,
        "response_url": response,
        "status_url": f"{response}/status",
        "cancel_url": f"{response}/cancel",
    }


def submitted(urls: Mapping[str, str], position: int) -> dict[str, Any]:
    # status/logs/metrics/queue_position as third-party captures show them (unverified).
    return {"status": "IN_QUEUE", **urls, "logs": None, "metrics": {}, "queue_position": position}


def status_doc(
    state: str,
    urls: Mapping[str, str],
    *,
    position: int = 0,
    logs: list[dict[str, Any]] | None = None,
    inference_time: float = 0.0,
    error: str | None = None,
    error_type: str | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {"status": state, "request_id": urls["request_id"]}
    doc["response_url"] = urls["response_url"]
    if state == "IN_QUEUE":
        doc["queue_position"] = position
        return doc
    doc["logs"] = logs
    if state == "COMPLETED":
        doc["metrics"] = {"inference_time": inference_time}
        doc["error"], doc["error_type"] = error, error_type
    return doc


def log_lines(state: str) -> list[dict[str, Any]]:
    lines = ["Loading model", "Generating image"]
    if state == "COMPLETED":
        lines.append("Done")
    return [
        {"message": text, "level": "INFO", "source": "user", "timestamp": "2026-11-21T12:00:00Z"}
        for text in lines
    ]


def result_doc(
    app: FalApp, job: Job, urls: Sequence[str], width: int, height: int, nsfw: bool
) -> dict[str, Any]:
    mime = f"image/{job.fmt}"
    images = [
        {"url": url, "content_type": mime, "width": width, "height": height, "file_name": None}
        for url in urls
    ]
    doc: dict[str, Any] = {"images": images}
    if app.nsfw_flags or nsfw:
        doc["has_nsfw_concepts"] = [nsfw] * len(urls)
        doc["seed"] = job.seed if job.seed is not None else 42
        doc["prompt"] = job.prompt
        doc["timings"] = {"inference": 1.2}
    return doc


def detail_error(detail: Any, error_type: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"detail": detail}
    if error_type is not None:
        doc["error_type"] = error_type
    return doc
