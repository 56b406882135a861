"""Black Forest Labs' FLUX API (shared/reference/flux-bfl.md): submit, poll, fetch.

`POST {base_url}/v1/{model}` with `x-key` answers `{id, polling_url, cost?, input_mp?,
output_mp?}`; the task is polled at the returned `polling_url` (it may be another cluster's
host, so it is always used as given, with the same `x-key`) until a terminal status. `Ready`
carries `result.sample`, a signed URL valid for about ten minutes that needs no key: the image
is downloaded at once and held like every other image.

Each endpoint family frames images its own way, so one table says how (FAMILIES):

- FLUX.2 (`flux-2-*`): `width`/`height`, multiples of 16, at most ~4 MP; `input_image` …
  `input_image_8` for editing.
- FLUX.1 Kontext (`flux-kontext-*`): `aspect_ratio` between 21:9 and 9:21 at ~1 MP;
  `input_image` … `input_image_4`.
- FLUX1.1 [pro] (and FLUX.1 pro/dev): `width`/`height`, multiples of 32 within 256–1440;
  `image_prompt`.
- FLUX1.1 [pro] Ultra: `aspect_ratio` only, ~4 MP; `image_prompt`, `raw`.
- FLUX.1 Fill [pro]: `image` + `mask` (white = inpaint). Without an input image it fills a blank
  canvas of the asked size under an all-white mask, which is text-to-image.

BFL has no `n` (the router fans out), no background and no compression. Fields with no unified
meaning (`safety_tolerance`, `prompt_upsampling`, `steps`, `guidance`, `raw`, …) come from
`request.passthrough["bfl"]` over `deployment.options["defaults"]`, checked against the family
and clamped to the endpoint's range. Other options: `poll_seconds` (first poll delay, 0.5),
`poll_max_seconds` (longest delay between polls, 3.0), `usd_per_credit` (BFL reports `cost` in
credits; with this rate the ledger books it in USD, else the credits are only noted).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import aiohttp
from PIL import Image

from imagegate.core.deployment import Capabilities, Deployment, UpstreamKey
from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.geometry import (
    Size,
    aspect_matches,
    nearest_ratio,
    ratio_value,
    size_for_tier,
    tier_for,
)
from imagegate.core.imageinfo import NotAnImage, sniff
from imagegate.core.request import Background, ImageRequest, Quality
from imagegate.core.result import ImageResult, Usage
from imagegate.output.mask import to_white_is_edit
from imagegate.providers._queue import call_json, fetch_image, wait_before_poll
from imagegate.providers.bfl_failures import (
    PROVIDER,
    classify_failure,
    classify_poll_failure,
    task_failure,
)

K = FailureKind
# Every ratio from 21:9 to 9:21 that clients commonly ask for; BFL takes any "W:H" in range.
RATIOS = ("21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16", "9:21")
FOUR_MP = 2048 * 2048
FLUX2_IMAGES = ("input_image", *(f"input_image_{i}" for i in range(2, 9)))
# Passthrough fields every endpoint takes; webhooks are harmless next to polling.
COMMON_FLAGS = ("prompt_upsampling",)
COMMON_FREE = ("webhook_url", "webhook_secret")
# Set by unified request fields; a passthrough may not override them.
RESERVED = frozenset({
    "prompt", "seed", "width", "height", "aspect_ratio", "output_format", "image", "mask",
    "image_prompt", *FLUX2_IMAGES,
})  # fmt: skip
TERMINAL = frozenset({"Ready", "Request Moderated", "Content Moderated", "Error", "Task not found"})
# A poll that fails for a passing reason is retried this many times in a row: the task (and
# its credits) is still there.
TRANSIENT_POLL_KINDS = frozenset({K.UNAVAILABLE, K.TIMEOUT, K.RATE_LIMITED, K.CAPACITY})
MAX_TRANSIENT_POLLS = 3


@dataclass(frozen=True, slots=True)
class Family:
    """How one group of BFL endpoints frames images and which extra fields it takes."""

    name: str
    framing: Literal["size", "ratio", "fill"]
    image_fields: tuple[str, ...]  # the body fields input images go in, in order
    safety_max: int  # safety_tolerance range is 0..safety_max
    resolutions: tuple[str, ...]
    output_formats: tuple[str, ...] = ("jpeg", "png")
    safety_max_with_inputs: int | None = None
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # clamped numbers
    integers: frozenset[str] = frozenset()  # ranged fields that are whole numbers
    flags: tuple[str, ...] = ()  # boolean fields
    free: tuple[str, ...] = ()  # fields forwarded as given (range not published)
    size_multiple: int = 1
    max_edge: int | None = None
    max_pixels: int | None = None

    def capabilities(self) -> Capabilities:
        sized = self.framing in ("size", "fill")
        return Capabilities(
            max_n=1,
            aspect_ratios=RATIOS,
            resolutions=self.resolutions,
            output_formats=self.output_formats,
            qualities=("auto",),
            max_input_images=len(self.image_fields),
            mask=self.framing == "fill",
            seed=True,
            arbitrary_sizes=sized,
            size_multiple=self.size_multiple if sized else 1,
            max_edge=self.max_edge if sized else None,
            max_pixels=self.max_pixels if sized else None,
        )


FLUX2 = Family(
    "FLUX.2",
    "size",
    FLUX2_IMAGES,
    safety_max=5,
    resolutions=("1K", "2K"),
    size_multiple=16,
    max_edge=2048,
    max_pixels=FOUR_MP,
)
FLUX2_FLEX = dataclasses.replace(
    FLUX2,
    name="FLUX.2 [flex]",
    ranges={"steps": (1, 50), "guidance": (1.5, 10)},
    integers=frozenset({"steps"}),
)
KONTEXT = Family(
    "FLUX.1 Kontext",
    "ratio",
    ("input_image", "input_image_2", "input_image_3", "input_image_4"),
    safety_max=6,
    safety_max_with_inputs=2,
    resolutions=("1K",),
    output_formats=("png", "jpeg"),
)
PRO_11 = Family(
    "FLUX1.1 [pro]",
    "size",
    ("image_prompt",),
    safety_max=6,
    resolutions=("1K",),
    size_multiple=32,
    max_edge=1440,
)
FLUX1 = dataclasses.replace(PRO_11, name="FLUX.1", free=("steps", "guidance", "interval"))
ULTRA = Family(
    "FLUX1.1 [pro] Ultra",
    "ratio",
    ("image_prompt",),
    safety_max=6,
    resolutions=("2K",),  # about 4 MP whatever is asked
    ranges={"image_prompt_strength": (0.0, 1.0)},
    flags=("raw",),
)
FILL = Family(
    "FLUX.1 Fill [pro]",
    "fill",
    ("image",),
    safety_max=6,
    resolutions=("1K", "2K"),
    ranges={"steps": (15, 50), "guidance": (1.5, 100)},
    integers=frozenset({"steps"}),
    size_multiple=32,  # canvas limits unverified: 32-px multiples up to 2048 per side
    max_edge=2048,
    max_pixels=FOUR_MP,
)


def family_for(model: str) -> Family:
    """The endpoint family of a BFL model; unknown models are taken for FLUX.2, the newest."""
    if model.startswith("flux-2-flex"):
        return FLUX2_FLEX
    if model.startswith("flux-kontext-"):
        return KONTEXT
    if model.startswith("flux-pro-1.1-ultra"):
        return ULTRA
    if model.startswith("flux-pro-1.1"):
        return PRO_11
    if model.startswith("flux-pro-1.0-fill"):
        return FILL
    if model in ("flux-pro", "flux-dev"):
        return FLUX1
    return FLUX2


def capabilities_for(model: str) -> Capabilities:
    return family_for(model).capabilities()


# --- building the submit ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submission:
    url: str
    body: dict[str, Any]
    notes: tuple[str, ...] = ()


def needs_pixels(request: ImageRequest, deployment: Deployment) -> bool:
    """Whether build_submit decodes or draws pixels (a mask, a Fill canvas): run it in a thread."""
    return request.mask is not None or (
        family_for(deployment.model).framing == "fill" and not request.input_images
    )


def build_submit(request: ImageRequest, deployment: Deployment) -> Submission:
    """The `POST /v1/{model}` call for one image.

    Raises UpstreamError(bad_request) naming the field for what the endpoint cannot honour,
    rather than leave it out.
    """
    family = family_for(deployment.model)
    caps = deployment.capabilities or family.capabilities()
    _refuse_unmapped(request, family)
    notes: list[str] = []
    body: dict[str, Any] = {"prompt": request.prompt}
    if family.framing == "fill":
        body.update(_fill_fields(request, caps, notes))
    else:
        body.update(_geometry_fields(request, family, caps))
        # _refuse_unmapped made sure there are no more images than fields
        for name, image in zip(family.image_fields, request.input_images, strict=False):
            body[name] = _b64(image.data)
    if request.seed is not None:
        body["seed"] = request.seed
    fmt = output_format_for(request, caps)
    if fmt is not None:
        body["output_format"] = fmt
        if fmt != request.output_format:
            notes.append(f"asked BFL for {fmt}; the gateway makes {request.output_format}")
    body.update(extra_fields(request, deployment, family, notes))
    return Submission(f"{deployment.base_url}/v1/{deployment.model}", body, tuple(notes))


def _refuse_unmapped(request: ImageRequest, family: Family) -> None:
    """Fields BFL has no way to honour; the router should not have sent them (plan.find_gap)."""
    if request.background is Background.TRANSPARENT:
        raise _bad("background", "BFL makes no transparent backgrounds")
    if request.quality is not Quality.AUTO:
        raise _bad("quality", "BFL has no quality setting; choose the model instead")
    if len(request.input_images) > len(family.image_fields):
        raise _bad("image", f"{family.name} takes at most {len(family.image_fields)} images")
    if request.mask is not None and family.framing != "fill":
        raise _bad("mask", f"{family.name} takes no mask; use flux-pro-1.0-fill")


def target_size(request: ImageRequest, caps: Capabilities) -> Size | None:
    """The pixel size for a width/height endpoint: as asked, or made from ratio and tier."""
    if request.size is not None:
        return request.size
    if request.aspect_ratio is None and request.resolution is None:
        return None  # the endpoint's default (FLUX.2 edits follow the input image)
    return size_for_tier(
        request.aspect_ratio,
        request.resolution,
        multiple=caps.size_multiple,
        max_edge=caps.max_edge,
        max_pixels=caps.max_pixels,
        max_short_edge=caps.max_short_edge,
    )


def _geometry_fields(request: ImageRequest, family: Family, caps: Capabilities) -> dict[str, Any]:
    if family.framing == "ratio":
        # The tier is fixed per family (Kontext ~1 MP, Ultra ~4 MP) and the router only sends
        # the declared one; a pixel size becomes its nearest ratio.
        ratio = request.aspect_ratio
        if request.size is not None:
            ratio = nearest_ratio(request.size.aspect, caps.aspect_ratios or RATIOS)
        return {} if ratio is None else {"aspect_ratio": ratio}
    size = target_size(request, caps)
    return {} if size is None else {"width": size.width, "height": size.height}


def _fill_fields(request: ImageRequest, caps: Capabilities, notes: list[str]) -> dict[str, Any]:
    """Fill's `image` and `mask`: the client's, or a blank canvas to fill whole."""
    if request.input_images:
        image = request.input_images[0].data
        _check_edit_geometry(request, _image_size(image), caps)
        fields = {"image": _b64(image)}
        if request.mask is not None:  # else the image's own alpha marks the area (BFL docs)
            fields["mask"] = _b64(to_white_is_edit(request.mask.data))
        return fields
    if request.mask is not None:
        raise _bad("mask", "a mask needs an input image to apply to")
    size = target_size(request, caps) or Size(1024, 1024)
    notes.append(f"flux-pro-1.0-fill has no text-to-image: filled a blank {size} canvas")
    return {"image": _b64(blank_png(size, (128, 128, 128))), "mask": _b64(blank_png(size))}


def _check_edit_geometry(request: ImageRequest, image: Size, caps: Capabilities) -> None:
    """Fill keeps the input image's size; a request for another geometry cannot be honoured."""
    if request.size is not None and request.size != image:
        raise _bad("size", f"flux-pro-1.0-fill keeps the input image's size, {image}")
    ratio = request.aspect_ratio
    if ratio is not None and not aspect_matches(image, ratio_value(ratio)):
        raise _bad("aspect_ratio", f"flux-pro-1.0-fill keeps the input image's size, {image}")
    tiers = caps.resolutions or ("1K",)
    if request.resolution is not None and tier_for(image, tiers) != request.resolution:
        raise _bad("resolution", f"flux-pro-1.0-fill keeps the input image's size, {image}")


def output_format_for(request: ImageRequest, caps: Capabilities) -> str | None:
    """The `output_format` to ask for: the client's when BFL makes it, else PNG to transcode.

    BFL has no compression setting, so a jpeg/webp request with `output_compression` is asked
    as PNG and the gateway encodes it at the asked compression.
    """
    wanted = request.output_format
    if wanted is None:
        return None
    if request.output_compression is not None and wanted in ("jpeg", "webp"):
        return "png"
    return wanted if wanted in caps.output_formats else "png"


def extra_fields(
    request: ImageRequest, deployment: Deployment, family: Family, notes: list[str]
) -> dict[str, Any]:
    """BFL-only fields: deployment defaults under the request's passthrough, checked, clamped."""
    defaults = deployment.options.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise _bad("bfl", "deployment option `defaults` must be a mapping of BFL fields")
    merged = {**defaults, **request.passthrough.get("bfl", {})}
    fields: dict[str, Any] = {}
    for name, value in merged.items():
        if name in RESERVED:
            raise _bad(f"bfl.{name}", f"`{name}` comes from the request's own field")
        if name == "safety_tolerance":
            top = family.safety_max
            if request.input_images and family.safety_max_with_inputs is not None:
                top = family.safety_max_with_inputs
            fields[name] = _clamped(name, value, (0, top), True, deployment.model, notes)
        elif name in family.ranges:
            limits = family.ranges[name]
            whole = name in family.integers
            fields[name] = _clamped(name, value, limits, whole, deployment.model, notes)
        elif name in (*COMMON_FLAGS, *family.flags):
            if not isinstance(value, bool):
                raise _bad(f"bfl.{name}", f"`{name}` must be true or false")
            fields[name] = value
        elif name in (*COMMON_FREE, *family.free):
            fields[name] = value
        else:
            raise _bad(f"bfl.{name}", f"{family.name} endpoints take no `{name}`")
    return fields


def _clamped(
    name: str,
    value: Any,
    limits: tuple[float, float],
    whole: bool,
    model: str,
    notes: list[str],
) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"bfl.{name}", f"`{name}` must be a number")
    low, high = limits
    clamped = min(max(value, low), high)
    result: int | float = round(clamped) if whole else float(clamped)
    if result != value:
        notes.append(f"bfl.{name} {value} was brought to {result}, the range of {model}")
    return result


def blank_png(size: Size, color: tuple[int, int, int] = (255, 255, 255)) -> bytes:
    """A flat PNG (white by default: an all-white Fill mask inpaints everything)."""
    out = io.BytesIO()
    Image.new("RGB", (size.width, size.height), color).save(out, "PNG", compress_level=1)
    return out.getvalue()


def _image_size(data: bytes) -> Size:
    try:
        info = sniff(data)
    except NotAnImage:
        info = None
    if info is None:
        raise _bad("image", "the input image is not a readable PNG, JPEG, WebP or GIF")
    return Size(info.width, info.height)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _bad(param: str, reason: str) -> UpstreamError:
    return UpstreamError(K.BAD_REQUEST, f"BFL cannot honour `{param}`: {reason}", param=param)


# --- reading the answers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Task:
    """An accepted task: where to poll it, and what BFL said it costs."""

    id: str
    polling_url: str
    cost: float | None = None  # credits
    input_mp: float | None = None
    output_mp: float | None = None


@dataclass(frozen=True, slots=True)
class Poll:
    """One poll answer of a task still running or `Ready` (failures raise instead)."""

    status: str
    sample: str | None = None
    prompt: str | None = None
    progress: float | None = None

    @property
    def ready(self) -> bool:
        return self.sample is not None


def parse_submit(answer: Any, base_url: str) -> Task:
    if not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
        raise UpstreamError(
            K.UNAVAILABLE, "BFL accepted the request but its answer names no task id", status=200
        )
    task_id = answer["id"]
    polling_url = answer.get("polling_url")
    if not isinstance(polling_url, str) or not polling_url:
        polling_url = f"{base_url}/v1/get_result?id={urllib.parse.quote(task_id)}"
    if base_url.startswith("https:") and not polling_url.startswith("https:"):
        # polls carry the key: never in clear text, whatever the answer says
        raise UpstreamError(
            K.UNAVAILABLE, f"BFL named a polling URL that is not https ({polling_url[:80]})"
        )
    return Task(
        task_id,
        polling_url,
        _number(answer.get("cost")),
        _number(answer.get("input_mp")),
        _number(answer.get("output_mp")),
    )


def read_poll(answer: Any, task_id: str) -> Poll:
    """A running or `Ready` task; raises UpstreamError for every other terminal status.

    A status BFL may add later that is not terminal counts as still running: the request's
    deadline bounds the wait.
    """
    if not isinstance(answer, dict):
        raise UpstreamError(K.UNAVAILABLE, f"BFL's poll of task {task_id} is not a JSON object")
    status = str(answer.get("status") or "")
    if status in TERMINAL and status != "Ready":
        raise task_failure(status, task_id, answer.get("details"))
    if status != "Ready":
        return Poll(status, progress=_number(answer.get("progress")))
    result = answer.get("result")
    sample = result.get("sample") if isinstance(result, dict) else None
    if not isinstance(sample, str) or not sample:
        raise UpstreamError(
            K.EMPTY, f"BFL's task {task_id} is Ready but names no `result.sample` image"
        )
    prompt = result.get("prompt") if isinstance(result, dict) else None
    return Poll(status, sample=sample, prompt=prompt if isinstance(prompt, str) else None)


def book_task(task: Task, result: ImageResult, usd_per_credit: float | None) -> None:
    """Put BFL's reported cost on the result: in USD with a configured rate, else as a note."""
    result.notes.append(f"BFL task {task.id}")
    if task.cost is None:
        return
    sizes = ""
    if task.output_mp is not None:
        sizes = f" (input {task.input_mp or 0:g} MP, output {task.output_mp:g} MP)"
    result.notes.append(f"BFL charged {task.cost:g} credits{sizes}")
    if usd_per_credit is not None:
        result.usage = Usage(cost_usd=task.cost * usd_per_credit)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# --- the async shell ----------------------------------------------------------------------------


class BflProvider:
    kind: ClassVar[str] = "bfl"
    default_base_url: ClassVar[str] = "https://api.bfl.ai"
    needs_key: ClassVar[bool] = True

    def __init__(self, deployment: Deployment, session: aiohttp.ClientSession) -> None:
        self.deployment = deployment
        self.capabilities = deployment.capabilities or capabilities_for(deployment.model)
        self._session = session
        options = deployment.options
        self._first_poll = float(options.get("poll_seconds", 0.5))
        self._poll_ceiling = max(self._first_poll, float(options.get("poll_max_seconds", 3.0)))
        rate = options.get("usd_per_credit")
        self._usd_per_credit = None if rate is None else float(rate)

    async def generate(self, request: ImageRequest, key: UpstreamKey | None) -> ImageResult:
        if key is None:
            raise UpstreamError(K.AUTH, "BFL needs an API key; give the provider `keys`")
        if needs_pixels(request, self.deployment):
            submission = await asyncio.to_thread(build_submit, request, self.deployment)
        else:
            submission = build_submit(request, self.deployment)
        headers = {"x-key": key.secret}
        ceiling = self.deployment.timeout_seconds
        deadline = time.monotonic() + ceiling
        if request.deadline is not None:
            deadline = min(deadline, request.deadline)
        answer, _ = await call_json(
            self._session,
            "POST",
            submission.url,
            headers=headers,
            body=submission.body,
            deadline=deadline,
            ceiling=ceiling,
            provider=PROVIDER,
            classify=classify_failure,
        )
        task = parse_submit(answer, self.deployment.base_url)
        poll = await self._until_ready(task, headers, deadline)
        assert poll.sample is not None
        # The signed sample URL needs no key, and must not be given one: it is another host.
        image = await fetch_image(
            self._session, poll.sample, deadline=deadline, ceiling=ceiling, provider=PROVIDER
        )
        result = ImageResult(
            images=[image],
            provider=self.kind,
            deployment=self.deployment.name,
            model=self.deployment.model,
            notes=list(submission.notes),
        )
        if poll.prompt and poll.prompt != request.prompt:
            result.revised_prompt = poll.prompt  # prompt_upsampling rewrote it
        book_task(task, result, self._usd_per_credit)
        return result

    async def _until_ready(self, task: Task, headers: Mapping[str, str], deadline: float) -> Poll:
        """Poll the task's own URL until it is Ready; raise for failures and at the deadline."""
        polls = transient = 0
        while True:
            await wait_before_poll(
                polls,
                first=self._first_poll,
                ceiling=self._poll_ceiling,
                deadline=deadline,
                provider=PROVIDER,
            )
            polls += 1
            try:
                answer, _ = await call_json(
                    self._session,
                    "GET",
                    task.polling_url,
                    headers=headers,
                    deadline=deadline,
                    ceiling=self.deployment.timeout_seconds,
                    provider=PROVIDER,
                    classify=classify_poll_failure,
                )
            except UpstreamError as error:
                transient += 1
                if error.kind not in TRANSIENT_POLL_KINDS or transient > MAX_TRANSIENT_POLLS:
                    raise
                continue
            transient = 0
            poll = read_poll(answer, task.id)
            if poll.ready:
                return poll
