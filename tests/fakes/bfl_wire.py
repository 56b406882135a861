"""The Black Forest Labs FLUX API wire format, as the fake speaks it (reference flux-bfl.md).

Pure functions and tables: the endpoint table, submit validation (raising :class:`Invalid` with
FastAPI/pydantic's 422 ``{"detail": [{type, loc, msg, input}]}`` body), the output geometry a
task makes, and the poll documents.

Our choices where the reference is silent, all marked so: unknown body fields are rejected
(``extra_forbidden``) so a gateway bug cannot hide behind a field BFL would ignore; the credit
prices; FLUX.2 without width/height follows its first input image, else 1024×1024; FLUX.2's
default format is jpeg (like FLUX.1) and it also accepts webp (reference: unverified).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError

from tests.fakes.images import ImageFormat

Family = Literal["flux2", "kontext", "pro11", "flux1", "ultra", "fill"]
FOUR_MP = 2048 * 2048
ONE_MP = 1024 * 1024
FLUX2_IMAGES = ("input_image", *(f"input_image_{i}" for i in range(2, 9)))
KONTEXT_IMAGES = ("input_image", "input_image_2", "input_image_3", "input_image_4")
_COMMON = frozenset({"prompt", "seed", "safety_tolerance", "output_format", "webhook_url",
                     "webhook_secret", "prompt_upsampling"})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One ``POST /v1/{model}`` endpoint."""

    family: Family
    image_fields: tuple[str, ...]
    extra: frozenset[str] = frozenset()  # fields beyond _COMMON and the image fields
    safety_max: int = 6
    formats: tuple[str, ...] = ("jpeg", "png")
    default_format: ImageFormat = "jpeg"
    prompt_required: bool = False
    credits: float | None = None  # None: the answer has no cost/input_mp/output_mp (FLUX.1)
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    integers: frozenset[str] = frozenset()
    max_active: int | None = None  # None: the fake's max_active (24)

    @property
    def fields(self) -> frozenset[str]:
        return _COMMON | self.extra | frozenset(self.image_fields)


def _flux2(credits: float, **more: Any) -> Endpoint:
    return Endpoint(
        "flux2", FLUX2_IMAGES, frozenset({"width", "height"}) | more.pop("extra", frozenset()),
        safety_max=5, formats=("jpeg", "png", "webp"), prompt_required=True, credits=credits,
        **more,
    )  # fmt: skip


def _kontext(credits: float, **more: Any) -> Endpoint:
    return Endpoint(
        "kontext", KONTEXT_IMAGES, frozenset({"aspect_ratio"}), default_format="png",
        prompt_required=True, credits=credits, **more,
    )  # fmt: skip


_SIZED_FLUX1 = frozenset({"width", "height"})
_FLUX1 = _SIZED_FLUX1 | {"steps", "guidance", "interval"}
ENDPOINTS: Mapping[str, Endpoint] = {
    # credits are our numbers (reference: FLUX.2 [pro] about 3 credits for the first MP)
    "flux-2-pro": _flux2(3.0),
    "flux-2-pro-preview": _flux2(3.0),
    "flux-2-max": _flux2(7.0),
    "flux-2-flex": _flux2(
        6.0,
        extra=frozenset({"steps", "guidance"}),
        ranges={"steps": (1, 50), "guidance": (1.5, 10)},
        integers=frozenset({"steps"}),
    ),
    "flux-2-klein-4b": _flux2(1.0),
    "flux-2-klein-9b": _flux2(1.5),
    "flux-kontext-pro": _kontext(4.0),
    "flux-kontext-max": _kontext(8.0, max_active=6),
    "flux-pro-1.1": Endpoint("pro11", ("image_prompt",), _SIZED_FLUX1),
    "flux-pro": Endpoint("flux1", ("image_prompt",), _FLUX1),
    "flux-dev": Endpoint("flux1", ("image_prompt",), _FLUX1),
    "flux-pro-1.1-ultra": Endpoint(
        "ultra",
        ("image_prompt",),
        frozenset({"aspect_ratio", "raw", "image_prompt_strength"}),
        ranges={"image_prompt_strength": (0.0, 1.0)},
    ),
    "flux-pro-1.0-fill": Endpoint(
        "fill",
        ("image",),
        frozenset({"mask", "steps", "guidance"}),
        ranges={"steps": (15, 50), "guidance": (1.5, 100)},
        integers=frozenset({"steps"}),
    ),
}


class Invalid(Exception):
    """A 422 answer: pydantic v2 error entries under ``detail``."""

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__("; ".join(str(error["msg"]) for error in errors))
        self.errors = list(errors)

    def doc(self) -> dict[str, Any]:
        return {"detail": self.errors}


def error(kind: str, name: str, msg: str, value: Any, **ctx: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": kind, "loc": ["body", name], "msg": msg, "input": value}
    if ctx:
        entry["ctx"] = ctx
    return entry


@dataclass(frozen=True, slots=True)
class InputImage:
    """An input image as received: its bytes when base64, else the URL (never fetched)."""

    field: str
    data: bytes | None
    url: str | None
    size: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class Job:
    """A validated submit: what the task will make."""

    model: str
    endpoint: Endpoint
    width: int
    height: int
    format: ImageFormat
    prompt: str
    seed: int | None
    images: tuple[InputImage, ...]
    mask: bytes | None

    @property
    def input_mp(self) -> float:
        return round(sum(w * h for i in self.images if i.size for w, h in [i.size]) / 1e6, 2)

    @property
    def output_mp(self) -> float:
        return round(self.width * self.height / 1e6, 2)


def parse_submit(model: str, body: Mapping[str, Any]) -> Job:
    """Validate a submit body for ``model`` (known to ENDPOINTS); raises Invalid (422)."""
    endpoint = ENDPOINTS[model]
    errors: list[dict[str, Any]] = []
    for name in body:
        if name not in endpoint.fields:
            errors.append(
                error("extra_forbidden", name, "Extra inputs are not permitted", body[name])
            )
    prompt = _prompt(body, endpoint, errors)
    seed = _optional_int(body, "seed", errors)
    images = _images(body, endpoint, errors)
    _check_scalars(body, endpoint, bool(images), errors)
    fmt = _format(body, endpoint, errors)
    mask = _mask(body, images, errors) if endpoint.family == "fill" else None
    width, height = _geometry(body, endpoint, images, errors)
    if errors:
        raise Invalid(errors)
    return Job(model, endpoint, width, height, fmt, prompt, seed, tuple(images), mask)


def _prompt(body: Mapping[str, Any], endpoint: Endpoint, errors: list[dict[str, Any]]) -> str:
    value = body.get("prompt")
    if value is None:
        if endpoint.prompt_required:
            errors.append(error("missing", "prompt", "Field required", None))
        return ""
    if not isinstance(value, str):
        errors.append(error("string_type", "prompt", "Input should be a valid string", value))
        return ""
    return value


def _optional_int(body: Mapping[str, Any], name: str, errors: list[dict[str, Any]]) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(error("int_type", name, "Input should be a valid integer", value))
        return None
    return value


def _check_scalars(
    body: Mapping[str, Any], endpoint: Endpoint, with_images: bool, errors: list[dict[str, Any]]
) -> None:
    ranges = dict(endpoint.ranges)
    top = endpoint.safety_max
    if endpoint.family == "kontext" and with_images:
        top = 2  # reference: Kontext with input images allows at most 2 (Replicate's mirror)
    ranges["safety_tolerance"] = (0, top)
    integers = endpoint.integers | {"safety_tolerance"}
    for name, (low, high) in ranges.items():
        if name in body:
            _check_number(name, body[name], low, high, name in integers, errors)
    for name in ("prompt_upsampling", "raw"):
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            errors.append(error("bool_type", name, "Input should be a valid boolean", value))
    for name in ("steps", "guidance", "interval"):  # flux-pro / flux-dev: ranges unpublished
        value = body.get(name)
        if name not in ranges and value is not None and not _is_number(value):
            errors.append(error("float_type", name, "Input should be a valid number", value))


def _check_number(
    name: str, value: Any, low: float, high: float, whole: bool, errors: list[dict[str, Any]]
) -> None:
    if whole and (isinstance(value, bool) or not isinstance(value, int)):
        errors.append(error("int_type", name, "Input should be a valid integer", value))
    elif not _is_number(value):
        errors.append(error("float_type", name, "Input should be a valid number", value))
    elif value < low:
        errors.append(
            error(
                "greater_than_equal",
                name,
                f"Input should be greater than or equal to {low:g}",
                value,
                ge=low,
            )
        )
    elif value > high:
        errors.append(
            error(
                "less_than_equal",
                name,
                f"Input should be less than or equal to {high:g}",
                value,
                le=high,
            )
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _format(
    body: Mapping[str, Any], endpoint: Endpoint, errors: list[dict[str, Any]]
) -> ImageFormat:
    value = body.get("output_format")
    if value is None:
        return endpoint.default_format
    if value not in endpoint.formats:
        allowed = " or ".join(f"'{f}'" for f in endpoint.formats)
        errors.append(error("enum", "output_format", f"Input should be {allowed}", value))
        return endpoint.default_format
    fmt: ImageFormat = value
    return fmt


def _images(
    body: Mapping[str, Any], endpoint: Endpoint, errors: list[dict[str, Any]]
) -> list[InputImage]:
    images: list[InputImage] = []
    for name in endpoint.image_fields:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            errors.append(error("string_type", name, "Input should be a valid string", "…"))
        elif value.startswith(("http://", "https://")):
            images.append(InputImage(name, None, value, None))
        elif (decoded := decode_image(value)) is None:
            errors.append(
                error(
                    "value_error",
                    name,
                    "Value error, Invalid image: could not decode base64 image",
                    value[:32],
                )
            )
        else:
            images.append(InputImage(name, decoded[0], None, decoded[1]))
    if endpoint.family == "fill" and "image" not in body:
        errors.append(error("missing", "image", "Field required", None))
    return images


def decode_image(text: str) -> tuple[bytes, tuple[int, int]] | None:
    """The bytes and pixel size of a base64 image (a ``data:`` prefix allowed), or None."""
    payload = text.partition(",")[2] if text.startswith("data:") else text
    try:
        data = base64.b64decode(payload, validate=True)
        with Image.open(io.BytesIO(data)) as image:
            return data, image.size
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError):
        return None


def _mask(
    body: Mapping[str, Any], images: list[InputImage], errors: list[dict[str, Any]]
) -> bytes | None:
    value = body.get("mask")
    if value is None:
        return None
    decoded = decode_image(value) if isinstance(value, str) else None
    if decoded is None:
        errors.append(
            error(
                "value_error",
                "mask",
                "Value error, Invalid mask: could not decode base64 image",
                "…",
            )
        )
        return None
    image = next((i for i in images if i.field == "image"), None)
    if image is not None and image.size is not None and decoded[1] != image.size:
        w, h = decoded[1]
        iw, ih = image.size
        errors.append(
            error(
                "value_error",
                "mask",
                f"Value error, Mask size {w}x{h} does not match image size {iw}x{ih}",
                "…",
            )
        )
    return decoded[0]


def _geometry(
    body: Mapping[str, Any],
    endpoint: Endpoint,
    images: list[InputImage],
    errors: list[dict[str, Any]],
) -> tuple[int, int]:
    """The pixel size the task makes, validating width/height or aspect_ratio."""
    first = next((i.size for i in images if i.size is not None), None)
    family = endpoint.family
    if family == "fill":
        return first or (1024, 1024)
    if family in ("kontext", "ultra"):
        ratio = _ratio(body, errors)
        megapixels = FOUR_MP if family == "ultra" else ONE_MP
        if ratio is None:
            if family == "ultra":
                ratio = Fraction(16, 9)
            else:
                ratio = Fraction(first[0], first[1]) if first else Fraction(1)
        return pixels_for_ratio(ratio, megapixels)
    if family == "flux2":
        default = snap_flux2(first) if first else (1024, 1024)
        return _sizes(
            body, default, multiple=16, low=64, high=None, max_pixels=FOUR_MP, errors=errors
        )
    return _sizes(
        body, (1024, 768), multiple=32, low=256, high=1440, max_pixels=None, errors=errors
    )


def _sizes(
    body: Mapping[str, Any],
    default: tuple[int, int],
    *,
    multiple: int,
    low: int,
    high: int | None,
    max_pixels: int | None,
    errors: list[dict[str, Any]],
) -> tuple[int, int]:
    sides = []
    for name, fallback in zip(("width", "height"), default, strict=True):
        value = body.get(name)
        if value is None:
            sides.append(fallback)
            continue
        count = len(errors)
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(error("int_type", name, "Input should be a valid integer", value))
        elif value < low:
            errors.append(
                error(
                    "greater_than_equal",
                    name,
                    f"Input should be greater than or equal to {low}",
                    value,
                    ge=low,
                )
            )
        elif high is not None and value > high:
            errors.append(
                error(
                    "less_than_equal",
                    name,
                    f"Input should be less than or equal to {high}",
                    value,
                    le=high,
                )
            )
        elif value % multiple:
            errors.append(
                error(
                    "multiple_of",
                    name,
                    f"Input should be a multiple of {multiple}",
                    value,
                    multiple_of=multiple,
                )
            )
        sides.append(value if len(errors) == count else fallback)
    width, height = sides
    if max_pixels is not None and width * height > max_pixels:
        errors.append(
            error(
                "value_error",
                "width",
                f"Value error, width × height must be at most {max_pixels} pixels",
                width,
            )
        )
    return width, height


def _ratio(body: Mapping[str, Any], errors: list[dict[str, Any]]) -> Fraction | None:
    value = body.get("aspect_ratio")
    if value is None:
        return None
    parts = value.split(":") if isinstance(value, str) else []
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        errors.append(
            error(
                "string_pattern_mismatch",
                "aspect_ratio",
                "String should match pattern '^\\d+:\\d+$'",
                value,
            )
        )
        return None
    ratio = Fraction(int(parts[0]), int(parts[1]))
    if not Fraction(9, 21) <= ratio <= Fraction(21, 9):
        errors.append(
            error(
                "value_error",
                "aspect_ratio",
                "Value error, Aspect ratio must be between 21:9 and 9:21",
                value,
            )
        )
        return None
    return ratio


def pixels_for_ratio(ratio: Fraction, pixels: int, multiple: int = 16) -> tuple[int, int]:
    """About ``pixels`` pixels at ``ratio``, sides rounded to ``multiple``."""
    width = math.sqrt(pixels * ratio)
    height = width / float(ratio)
    return _round(width, multiple), _round(height, multiple)


def snap_flux2(size: tuple[int, int]) -> tuple[int, int]:
    """An input image's size as FLUX.2 would make it: multiples of 16, within 4 MP, ≥ 64."""
    width, height = size
    scale = min(1.0, math.sqrt(FOUR_MP / (width * height)))
    return max(64, int(width * scale) // 16 * 16), max(64, int(height * scale) // 16 * 16)


def _round(length: float, multiple: int) -> int:
    return max(multiple, round(length / multiple) * multiple)


# --- answers ------------------------------------------------------------------------------------


def submit_answer(job: Job, task_id: str, polling_url: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": task_id, "polling_url": polling_url}
    if job.endpoint.credits is not None:
        doc |= {"cost": job.endpoint.credits, "input_mp": job.input_mp, "output_mp": job.output_mp}
    return doc


def poll_answer(
    task_id: str,
    status: str,
    *,
    result: Mapping[str, Any] | None = None,
    progress: float | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``GET /v1/get_result`` for one task, the shape BFL-DOCS gives."""
    return {
        "id": task_id,
        "status": status,
        "result": dict(result) if result is not None else None,
        "progress": progress,
        "details": dict(details) if details is not None else None,
        "preview": None,
    }
