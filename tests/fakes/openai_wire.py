"""The OpenAI Images API wire format, as the fake speaks it (shared/reference/openai-images.md).

Pure functions and tables: the model table, request validation for generations and edits
(raising :class:`ApiError` with OpenAI's ``{"error": {message, type, param, code}}`` body), and
the response documents with ``image_slot(i)`` placeholders for the base64 images.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError

from tests.fakes.images import ImageFormat
from tests.fakes.server import FormValue, UploadedFile, image_slot

Kind = Literal["generation", "edit"]

STANDARD_SIZES = ("1024x1024", "1024x1536", "1536x1024")
FIXED_SIZE_MODELS = frozenset({"gpt-image-1-mini", "gpt-image-1.5", "chatgpt-image-latest"})
GPT_IMAGE_25 = frozenset({
    "gpt-image-2.5-sunburst", "gpt-image-2.5-flare",
    "gpt-image-2.5-sunburst-2026-09-08", "gpt-image-2.5-flare-2026-09-08",
})  # fmt: skip
FLEX_SIZE_MODELS = frozenset({"gpt-image-2", "gpt-image-2-2026-04-21", *GPT_IMAGE_25})
ACTIVE_MODELS = FIXED_SIZE_MODELS | FLEX_SIZE_MODELS
# Shut down per openai SDK 3.54; the real error body for them is unverified (our choice below).
RETIRED_MODELS: Mapping[str, str] = {
    "gpt-image-1": "2026-10-23",
    "dall-e-2": "2026-05-12",
    "dall-e-3": "2026-05-12",
}
# The API's documented default model when none is given (SPEC), which is now retired.
DEFAULT_MODEL = "dall-e-2"

QUALITIES = ("low", "medium", "high", "auto")
QUALITIES_25 = ("low", "medium", "high", "xhigh", "max", "auto")
OUTPUT_FORMATS: Mapping[str, ImageFormat] = {"png": "png", "jpeg": "jpeg", "webp": "webp"}
BACKGROUNDS = ("transparent", "opaque", "auto")
MAX_PROMPT = 32_000
MAX_INPUT_IMAGES = 16
MAX_LONG_SIDE, MAX_SHORT_SIDE = 3840, 2160

_COMMON_FIELDS = frozenset({
    "model", "prompt", "n", "size", "quality", "background", "output_format",
    "output_compression", "moderation", "stream", "partial_images", "response_format", "user",
    "safety_identifier",
})  # fmt: skip
GENERATION_FIELDS = _COMMON_FIELDS | {"style", "complexity", "frame_count", "frame_duration_ms"}
EDIT_FORM_FIELDS = _COMMON_FIELDS | {"image", "image[]", "mask", "markup", "input_fidelity"}
EDIT_JSON_FIELDS = _COMMON_FIELDS | {"images", "mask", "input_fidelity"}
_INT_FIELDS = ("n", "output_compression", "partial_images")

# Output image tokens for a 1024x1024 image per quality (gpt-image-1's published table for
# low/medium/high; xhigh and max are our extrapolation). Other sizes scale by pixel count.
IMAGE_TOKENS_1024 = {"low": 272, "medium": 1056, "high": 4160, "xhigh": 6240, "max": 8320}
INPUT_IMAGE_TOKENS = 194  # per input image on edits (unverified)


class ApiError(Exception):
    """An OpenAI error answer."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.message = message
        self.type = error_type
        self.param = param
        self.code = code
        self.extra = dict(extra or {})

    def doc(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.type, "param": self.param}
        error["code"] = self.code
        error.update(self.extra)
        return {"error": error}


def bad_value(param: str, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _choices(values: Sequence[str]) -> str:
    quoted = [f"'{value}'" for value in values]
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def missing_parameter(param: str) -> ApiError:
    return bad_value(param, f"Missing required parameter: '{param}'.", "missing_required_parameter")


def invalid_enum(param: str, value: Any, allowed: Sequence[str]) -> ApiError:
    return bad_value(param, f"Invalid value: '{value}'. Supported values are: {_choices(allowed)}.")


def mask_key(key: str) -> str:
    """How OpenAI echoes a wrong key: the first three and last four characters."""
    if len(key) <= 8:
        return key
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


def incorrect_api_key(key: str) -> ApiError:
    return ApiError(
        401,
        f"Incorrect API key provided: {mask_key(key)}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


def missing_api_key() -> ApiError:
    # The real answer to a request with no Authorization header (widely quoted; unverified here).
    return ApiError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field "
        "(with blank username) if you're accessing the API from your browser and are prompted for "
        "a username. You can obtain an API key from https://platform.openai.com/account/api-keys.",
    )


def invalid_json() -> ApiError:
    return ApiError(
        400,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
        "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
        "sent was not valid JSON. If you have trouble figuring out how to fix this, please contact "
        "us through our help center at help.openai.com.)",
    )


# --- requests -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class InputImage:
    """An edit input (image or mask) that decoded as an image."""

    data: bytes
    format: str  # Pillow's name: PNG, JPEG, WEBP
    width: int
    height: int
    has_alpha: bool


@dataclasses.dataclass(frozen=True, slots=True)
class ImagesRequest:
    """A validated generations or edits request; ``size``/``quality`` etc. as requested."""

    kind: Kind
    model: str
    prompt: str
    n: int
    size: str
    quality: str
    background: str
    output_format: ImageFormat
    stream: bool
    partial_images: int
    images: tuple[InputImage, ...] = ()
    mask: InputImage | None = None

    @property
    def pixels(self) -> tuple[int, int]:
        """The output size: ``auto`` is 1024x1024, or the first input's size on edits."""
        if self.size != "auto":
            width, _, height = self.size.partition("x")
            return int(width), int(height)
        if self.images:
            return self.images[0].width, self.images[0].height
        return 1024, 1024

    @property
    def size_label(self) -> str:
        width, height = self.pixels
        return f"{width}x{height}"

    @property
    def effective_quality(self) -> str:
        return "medium" if self.quality == "auto" else self.quality

    @property
    def effective_background(self) -> str:
        return "transparent" if self.background == "transparent" else "opaque"


def parse_generation(body: Mapping[str, Any]) -> ImagesRequest:
    """Validate a JSON generations body; raises ApiError."""
    _check_known(body, GENERATION_FIELDS)
    return _parse_common("generation", body, strict_types=True)


def parse_edit_json(body: Mapping[str, Any]) -> ImagesRequest:
    """Validate the JSON form of edits (``images: [{image_url: data-URL}]``)."""
    _check_known(body, EDIT_JSON_FIELDS)
    refs = body.get("images")
    if not isinstance(refs, list) or not refs:
        raise missing_parameter("images")
    images = [_image_from_ref(ref, f"images[{index}]") for index, ref in enumerate(refs)]
    mask_ref = body.get("mask")
    mask = _image_from_ref(mask_ref, "mask") if mask_ref is not None else None
    return _parse_edit(body, images, mask, strict_types=True)


def parse_edit_form(form: Mapping[str, list[FormValue]]) -> ImagesRequest:
    """Validate multipart edits: ``image`` or repeated ``image[]``, ``mask``, text scalars."""
    _check_known(form, EDIT_FORM_FIELDS)
    files = [*form.get("image", []), *form.get("image[]", [])]
    if not files:
        raise missing_parameter("image")
    images = [_image_from_file(value, "image", index) for index, value in enumerate(files)]
    mask_values = form.get("mask", [])
    mask = _image_from_file(mask_values[-1], "mask", 0) if mask_values else None
    if "markup" in form and mask is not None:
        raise bad_value("markup", "markup cannot be combined with mask.")  # unverified wording
    # Scalars are text parts; a repeated scalar keeps its last value.
    scalars = {
        name: values[-1]
        for name, values in form.items()
        if name not in ("image", "image[]", "mask", "markup") and values
    }
    return _parse_edit(scalars, images, mask, strict_types=False)


def _parse_edit(
    fields: Mapping[str, Any],
    images: list[InputImage],
    mask: InputImage | None,
    *,
    strict_types: bool,
) -> ImagesRequest:
    if len(images) > MAX_INPUT_IMAGES:
        raise bad_value(
            "image",
            f"Invalid 'image': too many images. Expected at most {MAX_INPUT_IMAGES} images, "
            f"but got {len(images)} instead.",
            "array_above_max_length",
        )
    if mask is not None:
        _check_mask(mask, images[0])
    request = _parse_common("edit", fields, strict_types=strict_types)
    fidelity = fields.get("input_fidelity")
    if fidelity is not None and fidelity not in ("high", "low"):
        raise invalid_enum("input_fidelity", fidelity, ("high", "low"))
    return dataclasses.replace(request, images=tuple(images), mask=mask)


def _check_known(fields: Mapping[str, Any], known: frozenset[str]) -> None:
    for name in fields:
        if name not in known:
            raise ApiError(
                400,
                f"Unrecognized request argument supplied: {name}",
                param=name,
                code="unknown_parameter",
            )


def _parse_common(kind: Kind, fields: Mapping[str, Any], *, strict_types: bool) -> ImagesRequest:
    values = dict(fields)
    for name in _INT_FIELDS:
        if name in values:
            values[name] = _integer(name, values[name], strict_types)
    if "stream" in values:
        values["stream"] = _boolean("stream", values["stream"], strict_types)
    model = _check_model(values.get("model"))
    prompt = _check_prompt(values.get("prompt"))
    n = _check_range("n", values.get("n", 1), 1, 10)
    size = _check_size(model, values.get("size", "auto"))
    quality = _check_quality(model, values.get("quality", "auto"))
    output_format = _check_format(values.get("output_format", "png"), values)
    background = _check_background(values.get("background", "auto"), output_format)
    _check_enum("moderation", values.get("moderation", "auto"), ("low", "auto"))
    _check_response_format(values.get("response_format"))
    partial_images = _check_range("partial_images", values.get("partial_images", 0), 0, 3)
    stream = bool(values.get("stream", False))
    return ImagesRequest(
        kind, model, prompt, n, size, quality, background, output_format, stream, partial_images
    )


def _integer(name: str, value: Any, strict: bool) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not strict and isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    got = "a string" if isinstance(value, str) else type(value).__name__
    raise bad_value(
        name,
        f"Invalid type for '{name}': expected an integer, but got {got} instead.",
        "invalid_type",
    )


def _boolean(name: str, value: Any, strict: bool) -> bool:
    if isinstance(value, bool):
        return value
    if not strict and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad_value(
        name, f"Invalid type for '{name}': expected a boolean, but got {value!r}.", "invalid_type"
    )


def _check_model(model: Any) -> str:
    name = DEFAULT_MODEL if model is None else str(model)
    if name in RETIRED_MODELS:
        # Our choice of body: a 404 like an unknown model, saying when it was shut down.
        raise ApiError(
            404,
            f"The model `{name}` was shut down on {RETIRED_MODELS[name]} and is no longer "
            "available. Use gpt-image-1.5, gpt-image-2 or gpt-image-2.5-sunburst instead.",
            code="model_not_found",
        )
    if name not in ACTIVE_MODELS:
        raise ApiError(
            404,
            f"The model `{name}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    return name


def _check_prompt(prompt: Any) -> str:
    if prompt is None:
        raise missing_parameter("prompt")
    if not isinstance(prompt, str):
        raise bad_value("prompt", "Invalid type for 'prompt': expected a string.", "invalid_type")
    if not prompt:
        raise bad_value(
            "prompt",
            "Invalid 'prompt': empty string. Expected a string with minimum length 1, but got an "
            "empty string instead.",
            "empty_string",
        )
    if len(prompt) > MAX_PROMPT:
        raise bad_value(
            "prompt",
            f"Invalid 'prompt': string too long. Expected a string with maximum length "
            f"{MAX_PROMPT}, but got a string with length {len(prompt)} instead.",
            "string_above_max_length",
        )
    return prompt


def _check_range(name: str, value: int, low: int, high: int) -> int:
    if value < low:
        raise bad_value(
            name,
            f"Invalid '{name}': integer below minimum value. Expected a value >= {low}, but got "
            f"{value} instead.",
            "integer_below_min_value",
        )
    if value > high:
        raise bad_value(
            name,
            f"Invalid '{name}': integer above maximum value. Expected a value <= {high}, but got "
            f"{value} instead.",
            "integer_above_max_value",
        )
    return value


def _check_enum(name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise invalid_enum(name, value, allowed)
    return str(value)


def _check_size(model: str, size: Any) -> str:
    if model in FIXED_SIZE_MODELS:
        return _check_enum("size", size, (*STANDARD_SIZES, "auto"))
    if size == "auto":
        return "auto"
    match = re.fullmatch(r"(\d+)x(\d+)", size) if isinstance(size, str) else None
    if match is None:
        raise bad_value("size", f"Invalid size '{size}'. Expected 'auto' or 'WIDTHxHEIGHT'.")
    width, height = int(match[1]), int(match[2])
    # gpt-image-2 and later (reference §2); the wording of these rejections is ours.
    if width <= 0 or height <= 0 or width % 16 or height % 16:
        raise bad_value("size", f"Invalid size '{size}'. Width and height must be multiples of 16.")
    if max(width, height) > 3 * min(width, height):
        raise bad_value(
            "size", f"Invalid size '{size}'. The aspect ratio must be between 1:3 and 3:1."
        )
    if max(width, height) > MAX_LONG_SIDE or min(width, height) > MAX_SHORT_SIDE:
        raise bad_value(
            "size",
            f"Invalid size '{size}'. The largest supported size is 3840x2160 (or 2160x3840).",
        )
    return f"{width}x{height}"


def _check_quality(model: str, quality: Any) -> str:
    return _check_enum("quality", quality, QUALITIES_25 if model in GPT_IMAGE_25 else QUALITIES)


def _check_format(output_format: Any, values: Mapping[str, Any]) -> ImageFormat:
    fmt = OUTPUT_FORMATS[_check_enum("output_format", output_format, tuple(OUTPUT_FORMATS))]
    compression = values.get("output_compression")
    if compression is not None:
        _check_range("output_compression", compression, 0, 100)
        # PNG is lossless, so only the no-op 100 is accepted with it (remembered from real
        # answers; unverified).
        if fmt == "png" and compression < 100:
            raise bad_value(
                "output_compression",
                "Compression less than 100 is not supported for PNG output format.",
            )
    return fmt


def _check_background(background: Any, output_format: str) -> str:
    value = _check_enum("background", background, BACKGROUNDS)
    if value == "transparent" and output_format == "jpeg":
        raise bad_value(
            "background",
            "Transparent background is not supported for output format 'jpeg'; use png or webp.",
        )
    return value


def _check_response_format(response_format: Any) -> None:
    if response_format is None or response_format == "b64_json":
        return
    if response_format == "url":
        # GPT image models always return b64_json; the exact wording is unverified.
        raise bad_value(
            "response_format",
            "Invalid value: 'url'. response_format 'url' is not supported for GPT image models, "
            "which always return base64-encoded images (b64_json).",
        )
    raise invalid_enum("response_format", response_format, ("url", "b64_json"))


# --- edit inputs ----------------------------------------------------------------------------------


def _image_from_file(value: FormValue, param: str, index: int) -> InputImage:
    if not isinstance(value, UploadedFile):
        raise bad_value(param, f"Invalid '{param}': expected a file upload, got a text field.")
    return _decode_image(value.data, param, index)


def _image_from_ref(ref: Any, param: str) -> InputImage:
    url = ref.get("image_url") if isinstance(ref, dict) else None
    if not isinstance(url, str):
        # file_id and https URLs need OpenAI's storage or the network; the fake has neither.
        raise bad_value(param, f"fake: '{param}' must be an object with a data: URL in image_url.")
    match = re.fullmatch(r"data:([\w.+/-]+);base64,(.*)", url, flags=re.DOTALL)
    if match is None:
        raise bad_value(param, f"fake: only base64 data: URLs are supported in '{param}'.")
    try:
        data = base64.b64decode(match[2], validate=True)
    except (binascii.Error, ValueError) as error:
        raise bad_value(param, f"Invalid base64 image data in '{param}'.") from error
    return _decode_image(data, param, 0)


def _decode_image(data: bytes, param: str, index: int) -> InputImage:
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt, (width, height), mode = image.format or "", image.size, image.mode
            transparency = "transparency" in image.info
    except (UnidentifiedImageError, OSError):
        fmt = ""
    if fmt not in ("PNG", "JPEG", "WEBP"):
        # Wording seen in real answers for broken uploads; the code is our choice.
        raise bad_value(
            param,
            f"Invalid image file or mode for image {index + 1}, please check your image file.",
            "invalid_image_file",
        )
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or transparency
    return InputImage(data, fmt, width, height, has_alpha)


def _check_mask(mask: InputImage, first: InputImage) -> None:
    # Fully transparent mask pixels (alpha 0) mark the area to edit, so a mask needs alpha.
    if mask.format != "PNG" or not mask.has_alpha:
        raise bad_value(
            "mask", "Invalid mask image: the mask must be a PNG image with an alpha channel."
        )
    if (mask.width, mask.height) != (first.width, first.height):
        raise bad_value(
            "mask",
            f"Invalid mask image: the mask is {mask.width}x{mask.height} but the image is "
            f"{first.width}x{first.height}; they must have the same dimensions.",
        )


# --- responses ------------------------------------------------------------------------------------


def usage(request: ImagesRequest) -> dict[str, Any]:
    width, height = request.pixels
    per_image = IMAGE_TOKENS_1024[request.effective_quality] * width * height // (1024 * 1024)
    output = per_image * request.n
    text = max(1, len(request.prompt) // 4)
    image_input = INPUT_IMAGE_TOKENS * (len(request.images) + (request.mask is not None))
    return {
        "input_tokens": text + image_input,
        "input_tokens_details": {"text_tokens": text, "image_tokens": image_input},
        "output_tokens": output,
        "output_tokens_details": {"text_tokens": 0, "image_tokens": output},
        "total_tokens": text + image_input + output,
    }


def images_response(request: ImagesRequest, created: int, count: int) -> dict[str, Any]:
    """The non-streaming answer with ``count`` image slots; quality/background/size resolved."""
    return {
        "created": created,
        "data": [{"b64_json": image_slot(index)} for index in range(count)],
        "background": request.effective_background,
        "output_format": request.output_format,
        "quality": request.effective_quality,
        "size": request.size_label,
        "usage": usage(request),
    }


def stream_events(request: ImagesRequest, created: int) -> list[tuple[str, dict[str, Any]]]:
    """SSE events: per image, ``partial_images`` partials then its completed event.

    Each event's data holds slot 0; how real streams interleave n > 1 is unverified, so images
    simply follow one another. Events echo the requested settings (reference §7).
    """
    prefix = "image_generation" if request.kind == "generation" else "image_edit"
    echo = {
        "created_at": created,
        "size": request.size,
        "quality": request.quality,
        "background": request.background,
        "output_format": request.output_format,
    }
    partial, completed = f"{prefix}.partial_image", f"{prefix}.completed"
    image = {"b64_json": image_slot(0)}
    events: list[tuple[str, dict[str, Any]]] = []
    for _ in range(request.n):
        for index in range(request.partial_images):
            doc = {"type": partial, **image, "partial_image_index": index, **echo}
            events.append((partial, doc))
        events.append((completed, {"type": completed, **image, **echo, "usage": usage(request)}))
    return events
