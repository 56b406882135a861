"""Replicate's wire format for FakeReplicate, pure: model schemas, validation, geometry, documents.

Model input schemas follow the replicate.com "API" pages of each model (secondary sources, see
shared/reference/fal-replicate.md); output sizes follow the rules those pages state (FLUX.2:
megapixels, sides multiples of 16 up to 2048; Kontext ~1 MP in multiples of 32; FLUX.1 by
`megapixels`; nano-banana: Gemini's 1K table scaled by tier). Problem bodies are RFC 7807 as
REP-SDK reads them; exact wordings not seen in a source are marked "ours".
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import io
import math
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError

from tests.fakes.gemini_wire import PIXELS_1K, TIER_SCALE

FLUX2_RATIOS = ("1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3")
KONTEXT_RATIOS = (
    *("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4"),
    *("21:9", "9:21", "2:1", "1:2"),
)
FLUX1_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
NANO_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
MEGAPIXEL = 1024 * 1024
FLUX2_MP = {"0.5 MP": 0.5, "1 MP": 1.0, "2 MP": 2.0, "4 MP": 4.0}


@dataclass(frozen=True, slots=True)
class ModelSchema:
    """The inputs one model takes, and how it frames its output."""

    name: str
    family: str  # flux-2 | kontext | flux-1 | nano-banana
    ratios: tuple[str, ...]
    special_ratios: tuple[str, ...]  # "custom", "match_input_image"
    default_ratio: str
    formats: tuple[str, ...]  # Replicate's names: webp, jpg, png
    default_format: str
    image_field: str | None = None
    max_images: int = 0
    quality: bool = False  # takes output_quality
    size_field: str | None = None  # resolution | megapixels
    sizes: tuple[str, ...] = ()
    default_size: str | None = None
    max_outputs: int = 1  # above 1: takes num_outputs, answers a list
    seed: bool = True
    tolerance: tuple[int, int] | None = None


def _flux2(name: str, max_images: int) -> ModelSchema:
    return ModelSchema(
        name,
        "flux-2",
        FLUX2_RATIOS,
        ("custom", "match_input_image"),
        "1:1",
        ("webp", "jpg", "png"),
        "webp",
        image_field="input_images",
        max_images=max_images,
        quality=True,
        size_field="resolution",
        sizes=("match_input_image", *FLUX2_MP),
        default_size="1 MP",
        tolerance=(1, 5),
    )


def _kontext(name: str) -> ModelSchema:
    return ModelSchema(
        name,
        "kontext",
        KONTEXT_RATIOS,
        ("match_input_image",),
        "match_input_image",
        ("jpg", "png"),
        "png",
        image_field="input_image",
        max_images=1,
        tolerance=(0, 6),
    )


def _flux1(name: str) -> ModelSchema:
    return ModelSchema(
        name,
        "flux-1",
        FLUX1_RATIOS,
        (),
        "1:1",
        ("webp", "jpg", "png"),
        "webp",
        quality=True,
        size_field="megapixels",
        sizes=("1", "0.25"),
        default_size="1",
        max_outputs=4,
    )


def _nano(name: str, max_images: int, tiers: tuple[str, ...], default_format: str) -> ModelSchema:
    return ModelSchema(
        name,
        "nano-banana",
        NANO_RATIOS,
        ("match_input_image",),
        "match_input_image",
        ("jpg", "png"),
        default_format,
        image_field="image_input",
        max_images=max_images,
        size_field="resolution" if tiers else None,
        sizes=tiers,
        default_size=tiers[0] if tiers else None,
        seed=False,
    )


MODELS: Mapping[str, ModelSchema] = {
    schema.name: schema
    for schema in (
        _flux2("black-forest-labs/flux-2-pro", 8),
        _flux2("black-forest-labs/flux-2-max", 8),
        _flux2("black-forest-labs/flux-2-flex", 10),
        _kontext("black-forest-labs/flux-kontext-pro"),
        _kontext("black-forest-labs/flux-kontext-max"),
        _flux1("black-forest-labs/flux-schnell"),
        _flux1("black-forest-labs/flux-dev"),
        # Google advises up to 3 images for 2.5 Flash Image; the schema says "multiple" (ours: 3).
        _nano("google/nano-banana", 3, (), "jpg"),
        _nano("google/nano-banana-pro", 14, ("1K", "2K", "4K"), "png"),
        _nano("google/nano-banana-2", 14, ("1K", "2K", "4K"), "jpg"),
    )
}


def version_id(model: str) -> str:
    """A stable 64-hex version id per model, as Replicate's look."""
    return hashlib.sha256(model.encode()).hexdigest()


# --- problems (RFC 7807) ---------------------------------------------------------------------------


class Problem(Exception):
    """Raised anywhere in a handler: answer with this problem JSON (application/problem+json)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.doc: dict[str, Any] = {"title": title, "detail": detail, "status": status, **extra}
        self.headers = dict(headers or {})


def unauthenticated(missing: bool) -> Problem:
    # The invalid-token wording is verbatim from REP-SDK's test cassette; the missing one is ours.
    detail = (
        "You did not pass an authentication token"
        if missing
        else "You did not pass a valid authentication token"
    )
    return Problem(401, "Unauthenticated", detail)


def insufficient_credit() -> Problem:
    return Problem(
        402,
        "Insufficient credit",
        "You have insufficient credit to run this model. Go to "
        "https://replicate.com/account/billing#billing to purchase credit. Once you purchase "
        "credit, please wait a few minutes before trying again.",
    )


def throttled(seconds: float) -> Problem:
    # Replicate's API is Django REST framework: its throttle wording, Retry-After in seconds.
    whole = max(1, math.ceil(seconds))
    unit = "second" if whole == 1 else "seconds"
    return Problem(
        429,
        "Request was throttled.",
        f"Request was throttled. Expected available in {whole} {unit}.",
        headers={"Retry-After": str(whole)},
    )


def not_found(what: str) -> Problem:
    return Problem(404, "Not found", f"The requested {what} does not exist.")  # wording ours


def invalid_version() -> Problem:
    return Problem(
        422,
        "Invalid version or not permitted",
        "The specified version does not exist (or perhaps you don't have permission to use it?)",
    )


def server_error() -> Problem:
    return Problem(500, "Internal Server Error", "An unexpected error occurred.")  # wording ours


@dataclass(frozen=True, slots=True)
class InvalidField:
    kind: str  # required | enum | type | minimum | maximum | maxItems | format
    field: str  # "input.aspect_ratio"
    description: str


def validation_failed(fields: list[InvalidField]) -> Problem:
    detail = "".join(f"- {f.field}: {f.description}\n" for f in fields)
    return Problem(
        422,
        "Input validation failed",
        detail,
        invalid_fields=[
            {"type": f.kind, "field": f.field, "description": f.description} for f in fields
        ],
    )


# --- validation ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedInput:
    """A validated input: the model's schema, the raw input and the input images' bytes."""

    schema: ModelSchema
    input: Mapping[str, Any]
    images: tuple[bytes, ...] = ()

    @property
    def outputs(self) -> int:
        return int(self.input.get("num_outputs", 1)) if self.schema.max_outputs > 1 else 1

    @property
    def output_format(self) -> str:
        return str(self.input.get("output_format", self.schema.default_format))


def parse_input(schema: ModelSchema, value: Any) -> ParsedInput:
    """Validate `input` the way a model's schema does; raises a 422 Problem naming each field."""
    if not isinstance(value, dict):
        raise validation_failed([InvalidField("type", "input", "Invalid type. Expected: object")])
    problems: list[InvalidField] = []
    prompt = value.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        problems.append(InvalidField("required", "input.prompt", "prompt is required"))
    _enum(value, "aspect_ratio", (*schema.ratios, *schema.special_ratios), problems)
    _enum(value, "output_format", schema.formats, problems)
    if schema.size_field is not None:
        _enum(value, schema.size_field, schema.sizes, problems)
    if schema.max_outputs > 1:
        _integer(value, "num_outputs", 1, schema.max_outputs, problems)
    if schema.quality:
        _integer(value, "output_quality", 0, 100, problems)
    if schema.seed:
        _integer(value, "seed", None, None, problems)
    if schema.family == "flux-2":
        _integer(value, "width", 256, 2048, problems)
        _integer(value, "height", 256, 2048, problems)
    if schema.tolerance is not None:
        _integer(value, "safety_tolerance", *schema.tolerance, problems)
    images = _images(schema, value, problems)
    if schema.family == "kontext" and images and int(value.get("safety_tolerance", 2)) > 2:
        problems.append(
            InvalidField(
                "maximum",
                "input.safety_tolerance",
                "safety_tolerance must be at most 2 when an input image is given",
            )
        )
    if problems:
        raise validation_failed(problems)
    return ParsedInput(schema, value, images)


def _enum(
    value: Mapping[str, Any], name: str, allowed: tuple[str, ...], out: list[InvalidField]
) -> None:
    if name in value and value[name] not in allowed:
        choices = ", ".join(f'"{item}"' for item in allowed)
        out.append(
            InvalidField("enum", f"input.{name}", f"{name} must be one of the following: {choices}")
        )


def _integer(
    value: Mapping[str, Any],
    name: str,
    low: int | None,
    high: int | None,
    out: list[InvalidField],
) -> None:
    if name not in value:
        return
    got = value[name]
    if not isinstance(got, int) or isinstance(got, bool):
        out.append(InvalidField("type", f"input.{name}", "Invalid type. Expected: integer"))
    elif low is not None and got < low:
        out.append(
            InvalidField("minimum", f"input.{name}", f"Must be greater than or equal to {low}")
        )
    elif high is not None and got > high:
        out.append(
            InvalidField("maximum", f"input.{name}", f"Must be less than or equal to {high}")
        )


def _images(
    schema: ModelSchema, value: Mapping[str, Any], out: list[InvalidField]
) -> tuple[bytes, ...]:
    name = schema.image_field
    if name is None or name not in value:
        return ()
    given = value[name]
    single = name == "input_image"
    items = [given] if single else given
    if not isinstance(items, list):
        out.append(InvalidField("type", f"input.{name}", "Invalid type. Expected: array"))
        return ()
    if len(items) > schema.max_images:
        out.append(
            InvalidField(
                "maxItems", f"input.{name}", f"Array must have at most {schema.max_images} items"
            )
        )
        return ()
    decoded: list[bytes] = []
    for index, item in enumerate(items):
        where = f"input.{name}" if single else f"input.{name}.{index}"
        data = _file_input(item)
        if data is None:
            out.append(InvalidField("format", where, "Does not match format 'uri'"))
        else:
            decoded.append(data)
    return tuple(decoded)


def _file_input(item: Any) -> bytes | None:
    """A data URI's image bytes; an http(s) URL (which the fake cannot fetch) as b""."""
    if not isinstance(item, str):
        return None
    if item.startswith(("http://", "https://")):
        return b""
    head, _, payload = item.partition(",")
    if not head.startswith("data:image/") or ";base64" not in head:
        return None
    try:
        data = base64.b64decode(payload, validate=True)
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError):
        return None
    return data


# --- output geometry --------------------------------------------------------------------------------


def output_size(parsed: ParsedInput) -> tuple[int, int]:
    """The pixel size the model makes for this input, by its family's rules."""
    schema, value = parsed.schema, parsed.input
    ratio = str(value.get("aspect_ratio", schema.default_ratio))
    source = _first_image_size(parsed.images)
    aspect = _aspect(ratio, source)
    if schema.family == "flux-2":
        if ratio == "custom":
            width = _clamp(_round(int(value.get("width", 1024)), 16), 256, 2048)
            return width, _clamp(_round(int(value.get("height", 1024)), 16), 256, 2048)
        resolution = str(value.get("resolution", "1 MP"))
        if resolution == "match_input_image":
            megapixels = 1.0 if source is None else source[0] * source[1] / MEGAPIXEL
            megapixels = min(4.0, max(0.5, megapixels))
        else:
            megapixels = FLUX2_MP[resolution]
        return _sized(aspect, megapixels, 16, max_edge=2048)
    if schema.family == "kontext":
        return _sized(aspect, 1.0, 32)
    if schema.family == "flux-1":
        return _sized(aspect, float(value.get("megapixels", "1")), 16)
    named = ratio if ratio in PIXELS_1K else _nearest(aspect, NANO_RATIOS)
    width, height = PIXELS_1K[named]
    scale = TIER_SCALE[str(value.get("resolution", schema.default_size or "1K"))]
    return int(width * scale), int(height * scale)


def _aspect(ratio: str, source: tuple[int, int] | None) -> float:
    if ratio in ("match_input_image", "custom"):
        return 1.0 if source is None else source[0] / source[1]
    width, _, height = ratio.partition(":")
    return int(width) / int(height)


def _nearest(aspect: float, ratios: tuple[str, ...]) -> str:
    return min(ratios, key=lambda r: abs(math.log(_aspect(r, None) / aspect)))


def _sized(
    aspect: float, megapixels: float, multiple: int, max_edge: int | None = None
) -> tuple[int, int]:
    width = math.sqrt(megapixels * MEGAPIXEL * aspect)
    height = width / aspect
    if max_edge is not None and max(width, height) > max_edge:
        scale = max_edge / max(width, height)
        width, height = width * scale, height * scale
    return _round(width, multiple), _round(height, multiple)


def _round(length: float, multiple: int) -> int:
    return max(multiple, round(length / multiple) * multiple)


def _clamp(value: int, low: int, high: int) -> int:
    return min(high, max(low, value))


def _first_image_size(images: tuple[bytes, ...]) -> tuple[int, int] | None:
    for data in images:
        if data:
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    return None


def parse_prefer(header: str | None) -> int | None:
    """`Prefer: wait` (60 s) or `wait=N` (1–60) → seconds; anything else → None (async mode)."""
    if header is None:
        return None
    for part in header.split(","):
        name, _, number = part.strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        if not number:
            return 60
        try:
            return min(60, max(1, int(number)))
        except ValueError:
            return None
    return None


# --- predictions --------------------------------------------------------------------------------------

TERMINAL = frozenset({"succeeded", "failed", "canceled"})
_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_prediction_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))


def timestamp() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class Job:
    """One prediction as the fake runs it: its status moves on each poll and with time."""

    id: str
    model: str
    version: str
    input: dict[str, Any]
    outputs: list[tuple[int, int, str]]  # width, height, Replicate format name
    list_output: bool
    final_status: str  # succeeded | failed | canceled
    error: str | None
    ready_at: float  # time.monotonic() when the run ends
    steps: int  # polls that still answer "processing" whatever the time
    predict_time: float
    status: str = "starting"
    logs: str = ""
    created_at: str = field(default_factory=timestamp)
    started_at: str | None = None
    completed_at: str | None = None
    cancel_requested: bool = False

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def advance(self, now: float) -> None:
        """One poll: a scripted processing step, else finish once the run time has passed."""
        if self.done:
            return
        if self.steps > 0:
            self.steps -= 1
            self.start()
        elif now >= self.ready_at:
            self.finish()
        else:
            self.start()

    def start(self) -> None:
        if self.status == "starting":
            self.status, self.started_at = "processing", timestamp()
            self.logs = "Using seed: 1234\nRunning prediction...\n"

    def finish(self) -> None:
        self.start()
        self.status, self.completed_at = self.final_status, timestamp()
        if self.status == "failed":
            self.logs += f"Error: {self.error}\n"

    def cancel(self) -> None:
        if not self.done:
            self.status, self.completed_at, self.cancel_requested = "canceled", timestamp(), True


def echoed_input(value: Mapping[str, Any]) -> dict[str, Any]:
    """The input as a prediction echoes it, data URIs cut short (they can be megabytes)."""
    return {name: _short(item) for name, item in value.items()}


def _short(item: Any) -> Any:
    if isinstance(item, str) and item.startswith("data:") and len(item) > 80:
        return item[:60] + "..."
    if isinstance(item, list):
        return [_short(part) for part in item]
    return item


def prediction_doc(job: Job, base_url: str, files_url: str) -> dict[str, Any]:
    """A prediction object as Replicate answers it (reference's example plus REP-SDK fields)."""
    output: Any = None
    if job.status == "succeeded":
        urls = [
            f"{files_url}/{job.id}/out-{index}.{fmt}"
            for index, (_, _, fmt) in enumerate(job.outputs)
        ]
        output = urls if job.list_output else urls[0]
    doc: dict[str, Any] = {
        "id": job.id,
        "model": job.model,
        "version": job.version,
        "input": job.input,
        "logs": job.logs,
        "output": output,
        "data_removed": False,
        "error": job.error if job.status == "failed" else None,
        "status": job.status,
        "source": "api",
        "created_at": job.created_at,
        "urls": {
            "cancel": f"{base_url}/v1/predictions/{job.id}/cancel",
            "get": f"{base_url}/v1/predictions/{job.id}",
            "web": f"https://replicate.com/p/{job.id}",
        },
    }
    if job.started_at is not None:
        doc["started_at"] = job.started_at
    if job.completed_at is not None:
        doc["completed_at"] = job.completed_at
        doc["metrics"] = {"predict_time": job.predict_time, "total_time": job.predict_time + 0.1}
    return doc


# Failure texts of predictions that ran and ended `failed`.
NSFW_ERROR = (
    "All generated images contained NSFW content. Try running it again with a different prompt."
)
SENSITIVE_ERROR = (
    "The input or output was flagged as sensitive. Please try again with different inputs. (E005)"
)
MODEL_ERROR = "Prediction interrupted; please retry (code: PA)"  # from memory (unverified)
