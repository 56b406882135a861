"""What each Replicate model takes as its prediction `input`, family by family.

Replicate serves every model through one predictions API, but each model has its own input
schema (the "API" page of the model on replicate.com; shared/reference/fal-replicate.md). A
family maps the gateway's request onto one schema and declares exactly what that schema can
honour, so the router refuses the rest (a field a model would silently ignore is a field the
gateway would drop). Fields only Replicate's models know travel in
`request.passthrough["replicate"]` and are merged into `input` last, so they win.

Replicate says `jpg` where the gateway says `jpeg`; its `output_quality` is our
`output_compression` (0–100, 100 best).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from imagegate.core.deployment import Capabilities
from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.geometry import nearest_ratio, tier_for
from imagegate.core.request import ImageRequest, InputImage

Input = dict[str, Any]

FLUX2_RATIOS = ("1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3")
KONTEXT_RATIOS = (
    *("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4"),
    *("21:9", "9:21", "2:1", "1:2"),
)
FLUX1_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
NANO_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
GENERIC_RATIOS = ("1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3")

# FLUX.2 `resolution` is in megapixels. Our 1K is about 1 MP; our 2K (2048 at 1:1) is 4 MP,
# which FLUX.2 caps at 2048 px a side, so wide 2K images stay ~2.4 MP: still the 2K tier.
# "0.5 MP" is no tier of ours (the 512 tier is 0.26 MP); ask for it through the passthrough.
FLUX2_MEGAPIXELS = {"1K": "1 MP", "2K": "4 MP"}
FLUX2_MAX_EDGE = 2048
FLUX2_MIN_EDGE = 256  # Capabilities has no minimum: build_flux2 refuses smaller sides itself
# FLUX.1 [schnell]/[dev] `megapixels`: "1" or "0.25" (a 512 px square).
FLUX1_MEGAPIXELS = {"512": "0.25", "1K": "1"}
# Kontext refuses a safety_tolerance above 2 when an input image is given (schema text).
KONTEXT_MAX_TOLERANCE_WITH_IMAGE = 2


@dataclass(frozen=True, slots=True)
class Built:
    """A prediction's `input`, and what it could not honour as asked: warnings for the client
    (ImageResult.warnings), so that nothing is dropped silently."""

    input: Input
    warnings: list[str] = field(default_factory=list)


Builder = Callable[[ImageRequest, Capabilities], Built]


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    capabilities: Capabilities
    build: Builder


def data_uri(image: InputImage) -> str:
    """Replicate takes file inputs as URLs or data URIs (recommended below 1 MB each)."""
    return f"data:{image.mime_type};base64,{base64.b64encode(image.data).decode('ascii')}"


def replicate_format(fmt: str) -> str:
    return "jpg" if fmt == "jpeg" else fmt


def _common(request: ImageRequest, caps: Capabilities, built: Input) -> None:
    """Output format and seed, as most of these schemas take them (only in what `caps`
    declares: a format left out is made by the gateway's transcoding)."""
    if request.output_format is not None and request.output_format in caps.output_formats:
        built["output_format"] = replicate_format(request.output_format)
    if request.seed is not None and caps.seed:
        built["seed"] = request.seed


def _no_output_quality(request: ImageRequest, model: str) -> list[str]:
    """The warning for a compression the model cannot apply. The gateway's transcoding applies
    it only when it converts the format, so a model answering in the asked format skips it."""
    if request.output_compression is None:
        return []
    return [f"output_compression was not applied: {model} takes no output_quality on Replicate"]


def _tier_value(table: Mapping[str, str], tier: str, field_name: str) -> str:
    """A tier in the model's own terms. The router only sends declared tiers; a configured
    capability override may declare more than the family can make."""
    try:
        return table[tier]
    except KeyError:
        raise UpstreamError(
            FailureKind.BAD_REQUEST,
            f"this Replicate model has no {field_name} for the {tier} tier (it makes"
            f" {', '.join(table)}); check the deployment's capabilities",
            param="resolution",
        ) from None


def _framing(request: ImageRequest, caps: Capabilities) -> tuple[str | None, str | None]:
    """(aspect_ratio, tier) for schemas framed by ratio: a pixel size becomes its nearest ratio
    and tier (the router only sends sizes within reach of a declared ratio, plan.find_gap)."""
    if request.size is not None:
        ratio = nearest_ratio(request.size.aspect, caps.aspect_ratios or ("1:1",))
        return ratio, tier_for(request.size, caps.resolutions or ("1K",))
    return request.aspect_ratio, request.resolution


# --- FLUX.2 [pro] / [flex] / [max] ---------------------------------------------------------------


def build_flux2(request: ImageRequest, caps: Capabilities) -> Built:
    built: Input = {"prompt": request.prompt}
    if request.size is not None:
        # Any WxH (multiples of 16, 256–2048 a side) through aspect_ratio "custom".
        if min(request.size.width, request.size.height) < FLUX2_MIN_EDGE:
            raise UpstreamError(
                FailureKind.BAD_REQUEST,
                f"FLUX.2 makes sides of {FLUX2_MIN_EDGE} to {FLUX2_MAX_EDGE} pixels, not"
                f" {request.size}",
                param="size",
            )
        built.update(aspect_ratio="custom", width=request.size.width, height=request.size.height)
    else:
        if request.aspect_ratio is not None:
            built["aspect_ratio"] = request.aspect_ratio
        elif request.input_images:
            built["aspect_ratio"] = "match_input_image"  # an edit keeps its framing
        if request.resolution is not None:
            built["resolution"] = _tier_value(FLUX2_MEGAPIXELS, request.resolution, "resolution")
    if request.input_images:
        built["input_images"] = [data_uri(image) for image in request.input_images]
    _common(request, caps, built)
    if request.output_compression is not None:
        built["output_quality"] = request.output_compression
    return Built(built)


FLUX2 = Capabilities(
    max_n=1,
    aspect_ratios=FLUX2_RATIOS,
    resolutions=tuple(FLUX2_MEGAPIXELS),
    output_formats=("png", "jpeg", "webp"),
    max_input_images=8,
    seed=True,
    arbitrary_sizes=True,
    size_multiple=16,
    max_aspect=FLUX2_MAX_EDGE / FLUX2_MIN_EDGE,
    max_edge=FLUX2_MAX_EDGE,
    max_pixels=FLUX2_MAX_EDGE * FLUX2_MAX_EDGE,
)


# --- FLUX.1 Kontext [pro] / [max] ----------------------------------------------------------------


def build_kontext(request: ImageRequest, caps: Capabilities) -> Built:
    built: Input = {"prompt": request.prompt}
    ratio, _tier = _framing(request, caps)  # Kontext makes ~1 MP whatever the tier: "1K" only
    if ratio is not None:
        built["aspect_ratio"] = ratio
    elif request.input_images:
        built["aspect_ratio"] = "match_input_image"
    if request.input_images:
        built["input_image"] = data_uri(request.input_images[0])
    _common(request, caps, built)
    return Built(built, _no_output_quality(request, "FLUX.1 Kontext"))


def limit_kontext_tolerance(built: Built) -> None:
    """Kontext allows at most safety_tolerance 2 with an input image: lower a passthrough value
    (and say so) rather than have the prediction refused."""
    tolerance = built.input.get("safety_tolerance")
    if (
        "input_image" in built.input
        and isinstance(tolerance, int)
        and tolerance > KONTEXT_MAX_TOLERANCE_WITH_IMAGE
    ):
        built.input["safety_tolerance"] = KONTEXT_MAX_TOLERANCE_WITH_IMAGE
        built.warnings.append(
            f"safety_tolerance {tolerance} lowered to {KONTEXT_MAX_TOLERANCE_WITH_IMAGE}:"
            " Kontext allows no more with an input image"
        )


KONTEXT = Capabilities(
    max_n=1,
    aspect_ratios=KONTEXT_RATIOS,
    resolutions=("1K",),
    output_formats=("png", "jpeg"),
    max_input_images=1,
    seed=True,
)


# --- FLUX.1 [schnell] / [dev] --------------------------------------------------------------------


def build_flux1(request: ImageRequest, caps: Capabilities) -> Built:
    built: Input = {"prompt": request.prompt, "num_outputs": request.n}
    ratio, tier = _framing(request, caps)
    if ratio is not None:
        built["aspect_ratio"] = ratio
    if tier is not None:
        built["megapixels"] = _tier_value(FLUX1_MEGAPIXELS, tier, "megapixels")
    _common(request, caps, built)
    if request.output_compression is not None:
        built["output_quality"] = request.output_compression
    return Built(built)


FLUX1 = Capabilities(
    max_n=4,
    aspect_ratios=FLUX1_RATIOS,
    resolutions=tuple(FLUX1_MEGAPIXELS),
    output_formats=("png", "jpeg", "webp"),
    seed=True,
)


# --- Google nano-banana (Gemini image models hosted by Replicate) --------------------------------


def build_nano(request: ImageRequest, caps: Capabilities) -> Built:
    built: Input = {"prompt": request.prompt}
    ratio, tier = _framing(request, caps)
    if ratio is not None:
        built["aspect_ratio"] = ratio
    # nano-banana (2.5) has no `resolution` field: it always makes ~1K.
    if tier is not None and caps.resolutions != ("1K",):
        built["resolution"] = tier
    if request.input_images:
        built["image_input"] = [data_uri(image) for image in request.input_images]
    _common(request, caps, built)
    return Built(built, _no_output_quality(request, "nano-banana"))


NANO = Capabilities(
    max_n=1,
    aspect_ratios=NANO_RATIOS,
    resolutions=("1K",),
    output_formats=("png", "jpeg"),
    max_input_images=3,
)
NANO_PRO = Capabilities(
    max_n=1,
    aspect_ratios=NANO_RATIOS,
    resolutions=("1K", "2K", "4K"),
    output_formats=("png", "jpeg"),
    max_input_images=14,
)


# --- any other model: prompt, aspect ratio and seed, the rest through the passthrough ------------


def build_generic(request: ImageRequest, caps: Capabilities) -> Built:
    built: Input = {"prompt": request.prompt}
    ratio, _tier = _framing(request, caps)
    if ratio is not None:
        built["aspect_ratio"] = ratio
    if request.seed is not None:
        built["seed"] = request.seed
    return Built(built, _no_output_quality(request, "this model (no known input schema)"))


GENERIC = Capabilities(
    max_n=1,
    aspect_ratios=GENERIC_RATIOS,
    resolutions=("1K",),
    output_formats=("png",),  # not sent: the gateway transcodes whatever the model makes
    seed=True,
)


FAMILIES: Mapping[str, Family] = {
    "flux-2": Family("flux-2", FLUX2, build_flux2),
    "kontext": Family("kontext", KONTEXT, build_kontext),
    "flux-1": Family("flux-1", FLUX1, build_flux1),
    "nano-banana": Family("nano-banana", NANO, build_nano),
    "generic": Family("generic", GENERIC, build_generic),
}
# Official models by name; a pinned version (`owner/name:version`) is its model's family. Input
# image limits are the schema pages' ("Maximum 8 images", flex 10, nano-banana-pro 14); Google
# advises up to 3 for nano-banana (2.5 Flash Image).
MODELS: Mapping[str, tuple[str, Capabilities | None]] = {
    "black-forest-labs/flux-2-pro": ("flux-2", None),
    "black-forest-labs/flux-2-max": ("flux-2", None),
    "black-forest-labs/flux-2-flex": ("flux-2", replace(FLUX2, max_input_images=10)),
    "black-forest-labs/flux-kontext-pro": ("kontext", None),
    "black-forest-labs/flux-kontext-max": ("kontext", None),
    "black-forest-labs/flux-schnell": ("flux-1", None),
    "black-forest-labs/flux-dev": ("flux-1", None),
    "google/nano-banana": ("nano-banana", None),
    "google/nano-banana-pro": ("nano-banana", NANO_PRO),
    "google/nano-banana-2": ("nano-banana", NANO_PRO),
}


def model_name(model: str) -> str:
    """`owner/name` of `owner/name` or `owner/name:version`."""
    return model.partition(":")[0]


def family_for(model: str, family: str | None = None) -> Family:
    """The family of a model; `family` (a deployment option) names it for a model we do not
    list, such as a fine-tune of FLUX.1 [dev] under its own name."""
    if family is not None:
        return FAMILIES[family]
    name, caps = MODELS.get(model_name(model), ("generic", None))
    found = FAMILIES[name]
    return found if caps is None else replace(found, capabilities=caps)


def capabilities_for(model: str, family: str | None = None) -> Capabilities:
    return family_for(model, family).capabilities


def build_input(request: ImageRequest, family: Family, caps: Capabilities) -> Built:
    """The prediction's `input`: the family's mapping, then the passthrough on top."""
    built = family.build(request, caps)
    built.input.update(request.passthrough.get("replicate", {}))
    if family.name == "kontext":
        limit_kontext_tolerance(built)
    return built
