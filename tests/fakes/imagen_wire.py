"""Imagen's `:predict` wire format as the fakes speak it (reference vertex-ai.md §4 and
gemini-image.md §10): the model table, request validation and the answer documents.

Pure functions and tables only. Validation raises :class:`RpcError` (400 INVALID_ARGUMENT), as
the Gemini fake does. ``:predict`` parameters are a free-form struct read by the model server,
so only the camelCase names the SDKs send are accepted here (our reading; unverified).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from tests.fakes.gemini_wire import RpcError, invalid_argument
from tests.fakes.images import ImageFormat
from tests.fakes.server import image_slot

RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9")
# Pixels at 1K, from Vertex's Imagen docs (from memory, unverified): the four non-square sizes
# are up to 7 % off their nominal aspect, which the gateway's Imagen capabilities allow for.
# 2K doubles both sides.
PIXELS_1K: Mapping[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "3:4": (896, 1280),
    "4:3": (1280, 896),
    "9:16": (768, 1408),
    "16:9": (1408, 768),
}
MAX_SAMPLES = 4  # reference: 1-4 (unverified max)
MIME_FORMATS: Mapping[str, ImageFormat] = {"image/png": "png", "image/jpeg": "jpeg"}


@dataclass(frozen=True, slots=True)
class ImagenModel:
    name: str
    sizes: tuple[str, ...]  # sampleImageSize values it takes; empty: none (it makes 1K)
    edit: bool = False  # takes referenceImages and editMode (imagen-3.0-capability-001)
    developer_api: bool = True  # also served by the Developer API's legacy :predict


MODELS: Mapping[str, ImagenModel] = {
    model.name: model
    for model in (
        ImagenModel("imagen-4.0-generate-001", ("1K", "2K")),
        ImagenModel("imagen-4.0-ultra-generate-001", ("1K", "2K")),
        # "not Fast" (reference §4, unverified); Imagen 3 has no tiers in the reference.
        ImagenModel("imagen-4.0-fast-generate-001", ()),
        ImagenModel("imagen-3.0-generate-002", ()),
        ImagenModel("imagen-3.0-capability-001", (), edit=True, developer_api=False),
    )
}

_TOP_FIELDS = frozenset({"instances", "parameters"})
_PARAMETERS = frozenset({
    "sampleCount", "aspectRatio", "sampleImageSize", "negativePrompt", "seed", "addWatermark",
    "enhancePrompt", "personGeneration", "safetySetting", "includeRaiReason",
    "includeSafetyAttributes", "language", "guidanceScale", "outputOptions", "storageUri",
    "editMode", "editConfig",
})  # fmt: skip
# The Developer API refuses these (reference §10: GENAI-1.50 raises on them client-side; that the
# REST API answers 400 is our reading).
VERTEX_ONLY = frozenset({"seed", "negativePrompt", "addWatermark", "enhancePrompt", "storageUri"})
_EDIT_ONLY = frozenset({"editMode", "editConfig"})
PERSON_GENERATION = frozenset({"ALLOW_ALL", "ALLOW_ADULT", "DONT_ALLOW"})
SAFETY_SETTINGS = frozenset({
    "BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_ONLY_HIGH", "BLOCK_NONE",
})  # fmt: skip
EDIT_MODES = frozenset({
    "EDIT_MODE_DEFAULT", "EDIT_MODE_INPAINT_REMOVAL", "EDIT_MODE_INPAINT_INSERTION",
    "EDIT_MODE_OUTPAINT", "EDIT_MODE_CONTROLLED_EDITING", "EDIT_MODE_STYLE", "EDIT_MODE_BGSWAP",
    "EDIT_MODE_PRODUCT_IMAGE",
})  # fmt: skip
MASK_MODES = frozenset({
    "MASK_MODE_DEFAULT", "MASK_MODE_USER_PROVIDED", "MASK_MODE_BACKGROUND",
    "MASK_MODE_FOREGROUND", "MASK_MODE_SEMANTIC",
})  # fmt: skip
# Only RAW and MASK are emulated; CONTROL, STYLE, SUBJECT and CONTENT get a 400 from the fake.
_REFERENCE_TYPES = frozenset({"REFERENCE_TYPE_RAW", "REFERENCE_TYPE_MASK"})
# The reason text of a filtered image (wording from memory of public reports; unverified).
RAI_REASON = (
    "Your current safety filter threshold filtered out 1 generated images. You will not be "
    "charged for blocked images. Try rephrasing the prompt. If you think this was an error, "
    "send feedback. Support codes: 56562880"
)


@dataclass(frozen=True, slots=True)
class Reference:
    kind: str  # REFERENCE_TYPE_RAW | REFERENCE_TYPE_MASK
    image: bytes | None  # None: an automatic mask (background, foreground, semantic)
    size: tuple[int, int] | None
    mask_mode: str | None = None


@dataclass(frozen=True, slots=True)
class PredictRequest:
    """What the fake needs from a valid :predict body."""

    prompt: str
    sample_count: int
    aspect_ratio: str
    image_size: str
    fmt: ImageFormat
    seed: int | None
    include_rai_reason: bool
    enhance_prompt: bool
    references: tuple[Reference, ...] = ()
    edit_mode: str | None = None

    def reference(self, kind: str) -> Reference | None:
        return next((ref for ref in self.references if ref.kind == kind), None)

    @property
    def pixels(self) -> tuple[int, int]:
        """An edit keeps the input's size (our choice); a generation follows the ratio table."""
        raw = self.reference("REFERENCE_TYPE_RAW")
        if raw is not None and raw.size is not None:
            return raw.size
        width, height = PIXELS_1K[self.aspect_ratio]
        scale = 2 if self.image_size == "2K" else 1
        return width * scale, height * scale


def parse_predict(
    body: Mapping[str, Any], model: ImagenModel, *, developer_api: bool
) -> PredictRequest:
    """Validate a :predict body; raises RpcError (400)."""
    _known(body, _TOP_FIELDS, None)
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        raise invalid_argument("instances must hold exactly one instance.", "instances")
    instance = instances[0]
    _known(instance, frozenset({"prompt", "referenceImages"}), "instances[0]")
    prompt = instance.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid_argument("The prompt is empty.", "instances[0].prompt")
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise invalid_argument("parameters must be an object.", "parameters")
    _known(params, _PARAMETERS, "parameters")
    _check_surface(params, model, developer_api)
    references = _references(instance.get("referenceImages"), model)
    seed = _seed(params)
    return PredictRequest(
        prompt=prompt,
        sample_count=_sample_count(params.get("sampleCount")),
        aspect_ratio=_choice(params.get("aspectRatio", "1:1"), RATIOS, "aspectRatio"),
        image_size=_image_size(params.get("sampleImageSize"), model),
        fmt=_output_format(params.get("outputOptions")),
        seed=seed,
        include_rai_reason=params.get("includeRaiReason") is True,
        enhance_prompt=params.get("enhancePrompt") is True,
        references=references,
        edit_mode=_edit_mode(params.get("editMode"), references),
    )


def _known(obj: Mapping[str, Any], known: frozenset[str], where: str | None) -> None:
    for name in obj:
        if name not in known:
            at = f" at '{where}'" if where else ""
            raise invalid_argument(
                f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.',
                f"{where}.{name}" if where else name,
            )


def _check_surface(params: Mapping[str, Any], model: ImagenModel, developer_api: bool) -> None:
    if developer_api:
        for name in sorted(VERTEX_ONLY & params.keys()):
            raise invalid_argument(
                f"{name} parameter is not supported in Gemini API.", f"parameters.{name}"
            )
    if not model.edit:
        for name in sorted(_EDIT_ONLY & params.keys()):
            raise invalid_argument(
                f"{name} is not supported by {model.name}.", f"parameters.{name}"
            )
    if "storageUri" in params:
        raise invalid_argument("fake: Cloud Storage output is not emulated.", "storageUri")
    person = params.get("personGeneration")
    # The docs write lowercase dont_allow/allow_adult/allow_all, the SDK sends upper case.
    if person is not None and str(person).upper() not in PERSON_GENERATION:
        raise invalid_argument(f"Invalid personGeneration: {person!r}.", "personGeneration")
    safety = params.get("safetySetting")
    if safety is not None and safety not in SAFETY_SETTINGS:
        raise invalid_argument(f"Invalid safetySetting: {safety!r}.", "safetySetting")


def _sample_count(value: Any) -> int:
    if value is None:
        return 1  # our reading of the default
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SAMPLES:
        raise invalid_argument(
            f"sampleCount must be between 1 and {MAX_SAMPLES}, got {value!r}.", "sampleCount"
        )
    return value


def _choice(value: Any, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise invalid_argument(
            f"Unsupported {name} {value!r}. Supported values: {', '.join(allowed)}.", name
        )
    return str(value)


def _image_size(value: Any, model: ImagenModel) -> str:
    if value is None:
        return "1K"
    if not model.sizes:
        raise invalid_argument(
            f"sampleImageSize is not supported by {model.name}.", "sampleImageSize"
        )
    return _choice(value, model.sizes, "sampleImageSize")


def _seed(params: Mapping[str, Any]) -> int | None:
    seed = params.get("seed")
    if seed is None:
        return None
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise invalid_argument(f"seed must be an integer, got {seed!r}.", "seed")
    # A seed needs the watermark off (reference §4, secondary); the wording is ours.
    if params.get("addWatermark") is not False:
        raise invalid_argument(
            "Seed is not supported when the watermark is enabled: set addWatermark to false.",
            "seed",
        )
    return seed


def _output_format(options: Any) -> ImageFormat:
    if options is None:
        return "png"
    if not isinstance(options, dict):
        raise invalid_argument("outputOptions must be an object.", "outputOptions")
    _known(options, frozenset({"mimeType", "compressionQuality"}), "outputOptions")
    mime = options.get("mimeType", "image/png")
    fmt = MIME_FORMATS.get(str(mime))
    if fmt is None:
        raise invalid_argument(
            f"Unsupported mimeType {mime!r}. Supported: {', '.join(MIME_FORMATS)}.",
            "outputOptions.mimeType",
        )
    quality = options.get("compressionQuality")
    if quality is not None and (
        not isinstance(quality, int) or isinstance(quality, bool) or not 0 <= quality <= 100
    ):
        raise invalid_argument(
            "compressionQuality must be between 0 and 100.", "outputOptions.compressionQuality"
        )
    return fmt


def _references(value: Any, model: ImagenModel) -> tuple[Reference, ...]:
    if value is None:
        return ()
    if not model.edit:
        raise invalid_argument(
            f"referenceImages are not supported by {model.name}.", "instances[0].referenceImages"
        )
    if not isinstance(value, list):
        raise invalid_argument("referenceImages must be a list.", "instances[0].referenceImages")
    refs = tuple(_reference(item, index) for index, item in enumerate(value))
    raws = [ref for ref in refs if ref.kind == "REFERENCE_TYPE_RAW"]
    masks = [ref for ref in refs if ref.kind == "REFERENCE_TYPE_MASK"]
    if len(raws) != 1 or len(masks) > 1:
        raise invalid_argument(
            "An edit takes exactly one REFERENCE_TYPE_RAW image and at most one mask.",
            "instances[0].referenceImages",
        )
    if masks and masks[0].size is not None and masks[0].size != raws[0].size:
        raise invalid_argument(
            f"The mask is {masks[0].size} but the image is {raws[0].size}; they must match.",
            "instances[0].referenceImages",
        )
    return refs


def _reference(item: Any, index: int) -> Reference:
    where = f"instances[0].referenceImages[{index}]"
    if not isinstance(item, dict):
        raise invalid_argument("A reference image must be an object.", where)
    _known(
        item,
        frozenset({"referenceType", "referenceId", "referenceImage", "maskImageConfig"}),
        where,
    )
    kind = item.get("referenceType")
    if kind not in _REFERENCE_TYPES:
        raise invalid_argument(f"fake: referenceType {kind!r} is not emulated.", where)
    image = item.get("referenceImage")
    data, size = _image(image, f"{where}.referenceImage") if image is not None else (None, None)
    if kind == "REFERENCE_TYPE_RAW":
        if data is None:
            raise invalid_argument("A RAW reference needs its image.", where)
        return Reference(kind, data, size)
    config = item.get("maskImageConfig")
    if not isinstance(config, dict):
        raise invalid_argument("A MASK reference needs maskImageConfig.", where)
    mode = config.get("maskMode")
    if mode not in MASK_MODES:
        raise invalid_argument(f"Invalid maskMode {mode!r}.", f"{where}.maskImageConfig")
    if mode == "MASK_MODE_USER_PROVIDED" and data is None:
        raise invalid_argument("MASK_MODE_USER_PROVIDED needs the mask image.", where)
    if mode == "MASK_MODE_SEMANTIC" and not config.get("maskClasses"):
        raise invalid_argument("MASK_MODE_SEMANTIC needs maskClasses.", where)
    return Reference(kind, data, size, mode)


def _image(value: Any, where: str) -> tuple[bytes, tuple[int, int]]:
    if not isinstance(value, dict) or not isinstance(value.get("bytesBase64Encoded"), str):
        raise invalid_argument("The image needs bytesBase64Encoded.", where)
    text = value["bytesBase64Encoded"].replace("-", "+").replace("_", "/")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        with Image.open(io.BytesIO(data)) as image:
            size = image.size
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as error:
        raise invalid_argument("Unable to process the input image.", where) from error
    return data, size


def _edit_mode(value: Any, references: tuple[Reference, ...]) -> str | None:
    if value is None:
        return None
    if value not in EDIT_MODES:
        raise invalid_argument(f"Invalid editMode {value!r}.", "parameters.editMode")
    if not references:
        raise invalid_argument("editMode needs referenceImages.", "parameters.editMode")
    return str(value)


# --- answers ----------------------------------------------------------------------------------


def predictions_doc(
    request: PredictRequest, kept: int, filtered: int, mime_type: str
) -> dict[str, Any]:
    """The answer: ``kept`` images (slots 0..kept-1), then ``filtered`` filtered entries.

    Filtered entries appear only when includeRaiReason is set; otherwise filtered images are
    simply missing, and an answer with none left is ``{}`` (our reading; unverified).
    """
    predictions: list[dict[str, Any]] = []
    for index in range(kept):
        entry: dict[str, Any] = {"bytesBase64Encoded": image_slot(index), "mimeType": mime_type}
        if request.enhance_prompt:
            entry["prompt"] = f"A detailed, high quality image of {request.prompt}"
        predictions.append(entry)
    if request.include_rai_reason:
        predictions += [{"raiFilteredReason": RAI_REASON} for _ in range(filtered)]
    return {"predictions": predictions} if predictions else {}


def not_an_imagen_method(model: str, method: str) -> RpcError:
    return RpcError(
        400,
        "FAILED_PRECONDITION",
        f"The model {model} does not support the method {method} (fake wording).",
    )
