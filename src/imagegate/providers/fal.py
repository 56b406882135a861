"""fal.ai's queue API (shared/reference/fal-replicate.md, fal part).

One call is submit → poll → fetch: `POST {base_url}/{app}` with the model input as JSON answers
`{request_id, status_url, response_url, cancel_url}`; the status moves IN_QUEUE → IN_PROGRESS →
COMPLETED (which can still carry `error`/`error_type`); the result at `response_url` lists image
URLs (or `data:` URIs under `sync_mode`), downloaded at once. When the deadline comes first, the
job is cancelled (`PUT cancel_url`) so fal does not keep working and billing for nobody.

A deployment's model is a fal app id. Apps come in families that share one model and its input
fields: `fal-ai/flux-2-pro` makes images from text and `fal-ai/flux-2-pro/edit` edits them, so a
deployment of either serves both kinds of request, each sent to the app that takes it (and an
image with a mask to the family's inpainting app). Each family's input fields are in FAMILIES;
an app not listed is taken for a typical fal image model (prompt, image_size presets, seed,
output_format, enable_safety_checker): give such a deployment its capabilities in the config.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp

from imagegate.core.deployment import Capabilities, Deployment, UpstreamKey
from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.geometry import nearest_ratio, size_for_tier, tier_for
from imagegate.core.request import Background, ImageRequest, Quality
from imagegate.core.result import GeneratedImage, ImageResult
from imagegate.output.mask import to_white_is_edit
from imagegate.providers._queue import call_json, fetch_image, wait_before_poll
from imagegate.providers.fal_failures import classify_completed, classify_failure, is_decisive

PROVIDER = "fal"
# fal's own image_size presets (docs.fal.ai "Common Model Arguments"); square is 512x512, so a
# 1:1 request takes square_hd (1024x1024).
PRESET_BY_RATIO = {
    "1:1": "square_hd",
    "4:3": "landscape_4_3",
    "3:4": "portrait_4_3",
    "16:9": "landscape_16_9",
    "9:16": "portrait_16_9",
}
PIXEL_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
GEMINI_RATIOS = ("21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16")
OPENAI_SIZES = ("1024x1024", "1536x1024", "1024x1536")
OPENAI_SIZE_BY_RATIO = {"1:1": "1024x1024", "3:2": "1536x1024", "2:3": "1024x1536"}
NAMESPACES = ("workflows", "comfy")  # app ids with a leading namespace (fal-client's AppId)
RUNNING = ("IN_QUEUE", "IN_PROGRESS")
CANCEL_SECONDS = 2.0  # a best-effort cancel may outlive the request's deadline by this much


class Geometry(enum.StrEnum):
    """How a family takes the output geometry."""

    PIXELS = "pixels"  # image_size: a preset name or {"width", "height"}
    PRESETS = "presets"  # image_size: a preset name only (an app we know nothing about)
    SIZE_NAMES = "size_names"  # image_size: "1024x1024" | "1536x1024" | "1024x1536" (GPT image)
    ASPECT = "aspect"  # aspect_ratio (+ resolution 1K/2K/4K when the model has tiers)


@dataclass(frozen=True, slots=True)
class Family:
    """One model on fal, the apps that serve it, and the input fields they take."""

    generate: str  # text to image
    edit: str | None = None  # with input images
    inpaint: str | None = None  # one input image and a mask (`mask_url`, white = edit)
    geometry: Geometry = Geometry.PIXELS
    edit_geometry: bool = True  # False: the edit app sizes its output like the input image
    image_field: str = "image_urls"  # the edit app's input: a list, or "image_url" for one
    max_input_images: int = 0
    max_n: int = 1  # num_images at most; 1: the app has no num_images
    output_formats: tuple[str, ...] = ("jpeg", "png")
    seed: bool = True
    safety_checker: bool = True  # takes enable_safety_checker
    aspect_ratios: tuple[str, ...] = PIXEL_RATIOS
    resolutions: tuple[str, ...] = ("1K",)
    size_multiple: int = 16
    max_edge: int | None = None
    max_pixels: int | None = None
    openai_fields: bool = False  # quality and background, as OpenAI's GPT image models
    apps: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        apps = (self.generate, self.edit, self.inpaint)
        object.__setattr__(self, "apps", tuple(app for app in apps if app))

    def capabilities(self) -> Capabilities:
        pixels = self.geometry is Geometry.PIXELS
        named = self.geometry is Geometry.SIZE_NAMES
        return Capabilities(
            max_n=self.max_n,
            sizes=OPENAI_SIZES if named else None,
            aspect_ratios=tuple(OPENAI_SIZE_BY_RATIO) if named else self.aspect_ratios,
            resolutions=self.resolutions,
            output_formats=self.output_formats,
            qualities=("auto", "low", "medium", "high") if self.openai_fields else ("auto",),
            transparent_background=self.openai_fields,
            max_input_images=self.max_input_images if self.edit else 0,
            mask=self.inpaint is not None,
            seed=self.seed,
            arbitrary_sizes=pixels,
            size_multiple=self.size_multiple if pixels else 1,
            max_edge=self.max_edge if pixels else None,
            max_pixels=self.max_pixels if pixels else None,
        )


def _flux2(name: str) -> Family:
    # FLUX.2 on fal: image_size, seed, safety_tolerance, enable_safety_checker, output_format
    # jpeg|png, no num_images (fal's model pages). Sides ×16 up to 2048, at most ~4 MP (BFL's
    # limits, shared/reference/flux-bfl.md); up to 8 input images (BFL's; unverified on fal).
    return Family(
        generate=f"fal-ai/{name}",
        edit=f"fal-ai/{name}/edit",
        max_input_images=8,
        resolutions=("1K", "2K"),
        max_edge=2048,
        max_pixels=2048 * 2048,
    )


FAMILIES: tuple[Family, ...] = (
    _flux2("flux-2-pro"),
    _flux2("flux-2-max"),
    _flux2("flux-2-flex"),
    # FLUX.1 [dev]: the same weights behind text-to-image, image-to-image (one `image_url`, its
    # output sized like the input) and inpainting (`image_url` + `mask_url`). The side limit is
    # ours (fal publishes none).
    Family(
        generate="fal-ai/flux/dev",
        edit="fal-ai/flux/dev/image-to-image",
        inpaint="fal-ai/flux-lora/inpainting",
        edit_geometry=False,
        image_field="image_url",
        max_input_images=1,
        max_n=4,
        max_edge=2048,
    ),
    Family(generate="fal-ai/flux/schnell", max_n=4, max_edge=2048),
    # Gemini image models on fal: aspect_ratio (10 ratios), num_images 1–4, seed, output_format
    # jpeg|png|webp, safety_tolerance instead of a checker switch. Input-image limits are
    # Gemini's (unverified on fal).
    Family(
        generate="fal-ai/nano-banana",
        edit="fal-ai/nano-banana/edit",
        geometry=Geometry.ASPECT,
        max_input_images=3,
        max_n=4,
        output_formats=("png", "jpeg", "webp"),
        safety_checker=False,
        aspect_ratios=GEMINI_RATIOS,
    ),
    Family(
        generate="fal-ai/nano-banana-pro",
        edit="fal-ai/nano-banana-pro/edit",
        geometry=Geometry.ASPECT,
        max_input_images=14,
        max_n=4,
        output_formats=("png", "jpeg", "webp"),
        safety_checker=False,
        aspect_ratios=GEMINI_RATIOS,
        resolutions=("1K", "2K", "4K"),
    ),
    # OpenAI's GPT Image 1.5 through fal: image_size as three named sizes, quality, background,
    # num_images 1–4, output_format png|jpeg|webp, no seed. 16 inputs is OpenAI's limit
    # (unverified on fal); the edit app's mask convention is unverified, so no mask.
    Family(
        generate="fal-ai/gpt-image-1.5",
        edit="fal-ai/gpt-image-1.5/edit",
        geometry=Geometry.SIZE_NAMES,
        max_input_images=16,
        max_n=4,
        output_formats=("png", "jpeg", "webp"),
        seed=False,
        safety_checker=False,
        openai_fields=True,
    ),
)
_FAMILY_BY_APP = {app: family for family in FAMILIES for app in family.apps}


def family_for(model: str) -> Family:
    """The family that serves `model`; an unknown app is a typical fal image model on its own."""
    found = _FAMILY_BY_APP.get(model)
    if found is not None:
        return found
    return Family(generate=model, geometry=Geometry.PRESETS, aspect_ratios=tuple(PRESET_BY_RATIO))


def capabilities_for(model: str) -> Capabilities:
    return family_for(model).capabilities()


# --- building the submit call (pure) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submission:
    """The submit call: where it goes, the model input, and what the gateway did not send."""

    app: str
    url: str
    input: dict[str, Any]
    notes: tuple[str, ...] = ()


def build_submit(
    request: ImageRequest,
    deployment: Deployment,
    caps: Capabilities,
    white_mask: bytes | None = None,
) -> Submission:
    """The submit call for `request`. `white_mask` is request.mask made white = edit (the
    caller converts it off the event loop); the router only sends masks when caps allow them."""
    family = family_for(deployment.model)
    unsendable = _unsendable(request, family)
    if unsendable is not None:
        param, reason = unsendable
        raise UpstreamError(
            FailureKind.BAD_REQUEST,
            f"{family.generate} on fal {reason}; the deployment's capabilities claim more than"
            " its apps take",
            param=param,
        )
    app = _app_for(request, family)
    notes: list[str] = []
    body: dict[str, Any] = {"prompt": request.prompt}
    if app != family.edit or family.edit_geometry:
        body.update(geometry_fields(request, family, caps))
    elif request.size or request.aspect_ratio or request.resolution:
        notes.append(f"{app} sizes its output like the input image; the geometry was not sent")
    if family.max_n > 1:
        body["num_images"] = request.n
    if request.seed is not None and family.seed:
        body["seed"] = request.seed
    fmt, note = output_format(request, caps)
    if fmt is not None:
        body["output_format"] = fmt
    if note:
        notes.append(note)
    if family.openai_fields:
        if request.quality is not Quality.AUTO:
            body["quality"] = str(request.quality)
        if request.background is not Background.AUTO:
            body["background"] = str(request.background)
    if family.safety_checker:
        body["enable_safety_checker"] = bool(deployment.options.get("enable_safety_checker", True))
    body.update(_image_fields(request, family, app, white_mask))
    body.update(request.passthrough.get("fal", {}))
    return Submission(app, f"{deployment.base_url}/{app}", body, tuple(notes))


def _unsendable(request: ImageRequest, family: Family) -> tuple[str, str] | None:
    """(param, reason) for a field the family's apps have no way to take. The router sends
    only what the capabilities allow, so this happens only when a config override claims more
    than FAMILIES knows: refusing beats dropping the field."""
    if request.mask is not None and family.inpaint is None:
        return "mask", "has no inpainting app"
    if request.input_images and family.edit is None:
        return "image", "has no app that takes input images"
    if request.n > family.max_n:
        return "n", f"makes at most {family.max_n} images a call"
    if request.seed is not None and not family.seed:
        return "seed", "takes no seed"
    if not family.openai_fields and request.quality is not Quality.AUTO:
        return "quality", "has no quality setting"
    if not family.openai_fields and request.background is Background.TRANSPARENT:
        return "background", "makes no transparent background"
    return None


def _app_for(request: ImageRequest, family: Family) -> str:
    if request.mask is not None and family.inpaint is not None:
        return family.inpaint
    if request.input_images and family.edit is not None:
        return family.edit
    return family.generate


def geometry_fields(request: ImageRequest, family: Family, caps: Capabilities) -> dict[str, Any]:
    """The family's geometry fields for the size, or aspect ratio and tier, asked for."""
    if family.geometry is Geometry.SIZE_NAMES:
        if request.size is not None:
            return {"image_size": str(request.size)}
        if request.aspect_ratio is not None:
            return {"image_size": OPENAI_SIZE_BY_RATIO[request.aspect_ratio]}
        return {}
    if family.geometry is Geometry.ASPECT:
        return _aspect_fields(request, caps)
    if family.geometry is Geometry.PRESETS:
        ratio = request.aspect_ratio
        if request.size is not None:
            ratio = nearest_ratio(request.size.aspect, tuple(PRESET_BY_RATIO))
        preset = PRESET_BY_RATIO.get(ratio or "")
        return {} if preset is None else {"image_size": preset}
    if request.size is not None:
        return {"image_size": {"width": request.size.width, "height": request.size.height}}
    if request.aspect_ratio is None and request.resolution is None:
        return {}
    preset = PRESET_BY_RATIO.get(request.aspect_ratio or "")
    if request.resolution is None and preset is not None:
        return {"image_size": preset}
    size = size_for_tier(
        request.aspect_ratio,
        request.resolution,
        multiple=caps.size_multiple,
        max_edge=caps.max_edge,
        max_pixels=caps.max_pixels,
        max_short_edge=caps.max_short_edge,
    )
    return {"image_size": {"width": size.width, "height": size.height}}


def _aspect_fields(request: ImageRequest, caps: Capabilities) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    tiers = caps.resolutions or ("1K",)
    tier = request.resolution
    if request.size is not None:
        fields["aspect_ratio"] = nearest_ratio(request.size.aspect, caps.aspect_ratios or ())
        tier = tier_for(request.size, tiers)
    elif request.aspect_ratio is not None:
        fields["aspect_ratio"] = request.aspect_ratio
    # Nano Banana (2.5 Flash) has one tier and no resolution field.
    if tier is not None and tiers != ("1K",):
        fields["resolution"] = tier
    return fields


def output_format(request: ImageRequest, caps: Capabilities) -> tuple[str | None, str | None]:
    """(output_format to send, note). Formats the model cannot make are left to its default:
    the gateway transcodes. fal has no compression setting, so a compressed JPEG/WebP is asked
    as PNG and the gateway's transcoding applies the compression."""
    wanted = request.output_format
    if wanted is None:
        return None, None
    compressed = request.output_compression is not None and wanted in ("jpeg", "webp")
    if compressed and "png" in caps.output_formats:
        return "png", "fal has no compression setting: asked PNG, compressed by the gateway"
    return (wanted if wanted in caps.output_formats else None), None


def _image_fields(
    request: ImageRequest, family: Family, app: str, white_mask: bytes | None
) -> dict[str, Any]:
    if app == family.generate:
        return {}
    urls = [data_uri(image.data, image.mime_type) for image in request.input_images]
    if app == family.inpaint:
        return {"image_url": urls[0], "mask_url": data_uri(white_mask or b"", "image/png")}
    if family.image_field == "image_url":
        return {"image_url": urls[0]}
    return {family.image_field: urls}


def data_uri(data: bytes, mime_type: str) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"


# --- reading the queue's answers (pure) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    """A submitted request's queue URLs (status, result, cancel)."""

    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


def job_of(answer: Any, base_url: str, app: str) -> Job:
    """The queue URLs from the submit answer; built like fal-client does when one is missing:
    under the app's `{owner}/{app}` only, without the subpath."""
    if not isinstance(answer, dict) or not answer.get("request_id"):
        raise UpstreamError(
            FailureKind.UNAVAILABLE, "fal accepted the request but gave no request_id", status=200
        )
    request_id = str(answer["request_id"])
    root = f"{base_url}/{app_root(app)}/requests/{request_id}"
    return Job(
        request_id,
        str(answer.get("status_url") or f"{root}/status"),
        str(answer.get("response_url") or root),
        str(answer.get("cancel_url") or f"{root}/cancel"),
    )


def app_root(app: str) -> str:
    """`fal-ai/flux-2-pro/edit` → `fal-ai/flux-2-pro`: the queue's URLs drop the subpath."""
    parts = app.strip("/").split("/")
    keep = 3 if parts[0] in NAMESPACES else 2
    return "/".join(parts[:keep])


def image_urls(output: Any) -> list[str]:
    """The image URLs of a result, or the failure it stands for.

    fal blacks out an image its safety checker flags and says so in `has_nsfw_concepts`, so a
    flagged image is a safety failure, not an image.
    """
    if not isinstance(output, dict):
        raise UpstreamError(FailureKind.EMPTY, "fal's result is not a JSON object", status=200)
    flags = output.get("has_nsfw_concepts") or []
    if isinstance(flags, list) and any(flag is True for flag in flags):
        raise UpstreamError(
            FailureKind.SAFETY,
            "fal's safety checker flagged the image (it comes back blacked out); rephrase the"
            " prompt",
            status=200,
            provider_code="has_nsfw_concepts",
        )
    images = output.get("images")
    if not isinstance(images, list) or not images:
        # Single-image apps answer {"image": {...}} instead of a list.
        images = [output["image"]] if isinstance(output.get("image"), dict) else []
    urls = [str(image["url"]) for image in images if isinstance(image, dict) and image.get("url")]
    if not urls:
        raise UpstreamError(FailureKind.EMPTY, "fal's result holds no image", status=200)
    return urls


# --- the provider: a thin shell around the above --------------------------------------------


class FalProvider:
    kind: ClassVar[str] = "fal"
    default_base_url: ClassVar[str] = "https://queue.fal.run"
    needs_key: ClassVar[bool] = True

    def __init__(self, deployment: Deployment, session: aiohttp.ClientSession) -> None:
        self.deployment = deployment
        self.capabilities = deployment.capabilities or capabilities_for(deployment.model)
        self._session = session
        options = deployment.options
        # Polls start fast (a small image can be ready in a second) and back off to this.
        self._first_poll = float(options.get("poll_seconds", 0.25))
        self._max_poll = float(options.get("poll_max_seconds", 2.0))

    async def generate(self, request: ImageRequest, key: UpstreamKey | None) -> ImageResult:
        white_mask = None
        if request.mask is not None:
            white_mask = await asyncio.to_thread(to_white_is_edit, request.mask.data)
        submission = build_submit(request, self.deployment, self.capabilities, white_mask)
        deadline = self._deadline(request)
        auth = {} if key is None else {"Authorization": f"Key {key.secret}"}
        answer, _ = await self._call("POST", submission.url, auth, deadline, submission.input)
        job = job_of(answer, self.deployment.base_url, submission.app)
        status = await self._until_completed(job, auth, deadline)
        failure = classify_completed(status)
        if failure is not None and is_decisive(failure):
            raise failure
        # A failed request's result URL answers its error (a 422 naming the field, say).
        output, _ = await self._call("GET", job.response_url, auth, deadline)
        if failure is not None:
            raise failure
        urls = image_urls(output)
        result = ImageResult(
            images=await self._download(urls, deadline),
            provider=self.kind,
            deployment=self.deployment.name,
            model=self.deployment.model,
            notes=list(submission.notes),
        )
        if len(urls) != request.n:
            result.notes.append(f"fal returned {len(urls)} images for n={request.n}")
        return result

    def _deadline(self, request: ImageRequest) -> float:
        ceiling = time.monotonic() + self.deployment.timeout_seconds
        return ceiling if request.deadline is None else min(ceiling, request.deadline)

    async def _until_completed(
        self, job: Job, auth: Mapping[str, str], deadline: float
    ) -> Mapping[str, Any]:
        """Poll the status until COMPLETED; on the deadline (or cancellation) cancel the job."""
        polls = 0
        try:
            while True:
                await wait_before_poll(
                    polls,
                    first=self._first_poll,
                    ceiling=self._max_poll,
                    deadline=deadline,
                    provider=PROVIDER,
                )
                status, _ = await self._call("GET", job.status_url, auth, deadline)
                polls += 1
                if not isinstance(status, dict):
                    raise UpstreamError(FailureKind.UNAVAILABLE, "fal's status is not an object")
                state = status.get("status")
                if state == "COMPLETED":
                    return status
                if state not in RUNNING:
                    raise UpstreamError(
                        FailureKind.UNAVAILABLE, f"fal answered an unknown status {state!r}"
                    )
        except UpstreamError as error:
            if error.kind is FailureKind.TIMEOUT:
                await self._cancel(job, auth)
            raise
        except asyncio.CancelledError:
            await self._cancel(job, auth)  # a hedge that lost, or a client that hung up
            raise

    async def _cancel(self, job: Job, auth: Mapping[str, str]) -> None:
        """Best effort: fal answers 400 when the job finished meanwhile; nothing to do then."""
        with contextlib.suppress(UpstreamError):
            await call_json(
                self._session,
                "PUT",
                job.cancel_url,
                headers=auth,
                deadline=None,
                ceiling=CANCEL_SECONDS,
                provider=PROVIDER,
                classify=classify_failure,
            )

    async def _download(self, urls: list[str], deadline: float) -> list[GeneratedImage]:
        # No key on downloads: result files live on fal's CDN (or another host) and are public.
        ceiling = self.deployment.timeout_seconds
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(
                        fetch_image(
                            self._session, url, deadline=deadline, ceiling=ceiling, provider="fal"
                        )
                    )
                    for url in urls
                ]
        except ExceptionGroup as errors:
            first = errors.exceptions[0]
            if isinstance(first, UpstreamError):
                raise first from None
            raise
        return [task.result() for task in tasks]

    async def _call(
        self,
        method: str,
        url: str,
        auth: Mapping[str, str],
        deadline: float,
        body: Any = None,
    ) -> tuple[Any, Mapping[str, str]]:
        headers = dict(auth)
        remaining = deadline - time.monotonic()
        if method == "POST" and remaining > 1:
            # fal's time-to-start limit: a job still queued when our deadline passes is dropped
            # by fal itself, even if our cancel never arrives.
            headers["X-Fal-Request-Timeout"] = f"{remaining:.1f}"
        return await call_json(
            self._session,
            method,
            url,
            headers=headers,
            body=body,
            deadline=deadline,
            ceiling=self.deployment.timeout_seconds,
            provider=PROVIDER,
            classify=classify_failure,
        )
