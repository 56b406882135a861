"""Local diffusers pipelines: a pipeline folder on this machine, run on its CPU or GPU.

    providers: {sd: {kind: local}}
    deployments:
      sd15: {provider: sd, model: /models/sd15, options: {device: cuda, steps: 25}}

The deployment's `model` is a folder written by diffusers' `pipeline.save_pretrained()` (or
`options.path` is, and `model` is only a label). Nothing is downloaded: the folder is loaded with
`local_files_only`. Needs the optional extra: `pip install 'imagegate[local]'` (torch, diffusers,
transformers); without it the provider answers not_found with that hint.

Options: `device` (auto | cpu | cuda | cuda:N | mps), `dtype` (auto | float32 | float16 |
bfloat16; auto is half precision on a GPU), `steps` (denoising steps at medium quality; default
the pipeline's own), `guidance_scale`, `strength` (img2img/inpaint), `max_concurrency` (calls
running at once, default 1: one GPU runs one batch at a time), `max_n` (default 4), `max_edge`
(default twice the pipeline's native size), `max_aspect` (default 3), `size_multiple`, and
`img2img` / `inpaint` (default: known for the pipeline's class, see KNOWN_IMG2IMG).

How a request maps: `size` → width × height; aspect ratio and tier → a size of the tier's area
(the pipeline's native tier when no tier is given), sides a multiple of `size_multiple`;
`quality` scales the steps (low ½, high 1½); `n` → num_images_per_prompt; `seed` → a CPU
torch.Generator (a random seed otherwise, told in the result's notes); one input image →
img2img; with a mask → inpainting (the pixels outside the mask are the input's); png, jpeg and
webp are encoded here, `output_compression` as the JPEG/WebP quality. Transparent backgrounds
are refused. `passthrough["local"]` may carry negative_prompt, guidance_scale,
num_inference_steps and strength.

The pipeline is loaded on the first request, in a worker thread, once per process for the same
folder/device/dtype; every call runs in a worker thread too (diffusers_pipelines.py), never on
the event loop. A running torch call cannot be cancelled: the deadline is checked before it
starts and between denoising steps, where the pipeline is interrupted.
"""

from __future__ import annotations

import asyncio
import io
import math
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import orjson
from PIL import Image

from imagegate.core.deployment import Capabilities, Deployment, UpstreamKey
from imagegate.core.errors import ConfigError, FailureKind, UpstreamError
from imagegate.core.geometry import TIER_EDGE, TIERS, Size, size_for_tier, tier_for
from imagegate.core.imageinfo import sniff
from imagegate.core.payload import HeldB64
from imagegate.core.request import Background, ImageRequest, Quality
from imagegate.core.result import GeneratedImage, ImageResult
from imagegate.output.convert import SAVE_NAMES
from imagegate.providers.diffusers_pipelines import (
    DERIVED,
    CallOutcome,
    CallPlan,
    LoadSpec,
    Mode,
    PipelineCall,
    PipelineUnusable,
    Stopped,
    first_line,
    is_out_of_memory,
    load,
    run,
)

# The text-to-image classes whose img2img / inpaint pipeline diffusers builds from the same
# weights: what a deployment can do with input images and masks unless its options say.
KNOWN_IMG2IMG = frozenset(name for name, (img2img, _) in DERIVED.items() if img2img)
KNOWN_INPAINT = frozenset(name for name, (_, inpaint) in DERIVED.items() if inpaint)
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "9:21")
STEP_SCALE = {Quality.LOW: 0.5, Quality.MEDIUM: 1.0, Quality.HIGH: 1.5, Quality.AUTO: 1.0}
FALLBACK_STEPS = 30  # a pipeline whose __call__ has no default num_inference_steps
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True, slots=True)
class PipelineFacts:
    """What the pipeline folder's config files say, read without torch (cheap, at startup)."""

    class_name: str | None = None  # model_index.json's _class_name
    vae_scale_factor: int = 8  # pixels per latent cell
    native_edge: int = 1024  # the side the model was trained at
    patched: bool = False  # a transformer denoiser on 2×2 latent patches: sides a multiple of 16


def read_facts(folder: Path) -> PipelineFacts:
    """The folder's facts; defaults for what it does not say (or when it is not there yet)."""
    index = _json(folder / "model_index.json")
    if index is None:
        return PipelineFacts()
    vae = _json(folder / "vae" / "config.json") or {}
    channels = vae.get("block_out_channels")
    factor = 2 ** (len(channels) - 1) if isinstance(channels, list) and channels else 8
    denoiser = "unet" if "unet" in index else "transformer"
    sample = (_json(folder / denoiser / "config.json") or {}).get("sample_size")
    if isinstance(sample, list) and sample:
        sample = max(sample)
    if not isinstance(sample, int) or sample <= 0:
        sample = 64 if denoiser == "unet" else 128  # diffusers' defaults (SD 1.x, Flux)
    name = index.get("_class_name")
    return PipelineFacts(
        class_name=name if isinstance(name, str) else None,
        vae_scale_factor=factor,
        native_edge=sample * factor,
        patched=denoiser == "transformer",
    )


def _json(path: Path) -> dict[str, Any] | None:
    try:
        value = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True, slots=True)
class LocalSettings:
    """The deployment's options, checked (ConfigError names the offending option)."""

    path: Path
    device: str = "auto"
    dtype: str = "auto"
    steps: int | None = None
    guidance_scale: float | None = None
    strength: float | None = None
    max_concurrency: int = 1
    max_n: int = 4
    max_edge: int = 1024
    max_aspect: float = 3.0
    size_multiple: int = 8
    img2img: bool = False
    inpaint: bool = False

    @property
    def modes(self) -> tuple[Mode, ...]:
        modes: list[Mode] = ["text2img"]
        if self.img2img:
            modes.append("img2img")
        if self.inpaint:
            modes.append("inpaint")
        return tuple(modes)


def settings_for(deployment: Deployment, facts: PipelineFacts) -> LocalSettings:
    """The deployment's options with the folder's facts as defaults; ConfigError lists every
    bad option by its path, as the config loader does (this runs when the gateway starts)."""
    options = deployment.options
    where = f"deployments.{deployment.name}.options"
    problems: list[str] = []

    def number(name: str, kind: type[int] | type[float], low: float, default: Any) -> Any:
        value = options.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{where}.{name}: must be a number, not {value!r}")
            return default
        if value < low or (kind is int and value != int(value)):
            problems.append(
                f"{where}.{name}: must be {'a whole number ' if kind is int else ''}≥ {low}"
            )
            return default
        return kind(value)

    def choice(name: str, allowed: tuple[str, ...]) -> str:
        value = str(options.get(name, "auto"))
        base = value.split(":", 1)[0]  # cuda:1
        if base not in allowed:
            problems.append(f"{where}.{name}: one of {', '.join(allowed)}, not {value!r}")
            return "auto"
        return value

    def flag(name: str, default: bool) -> bool:
        value = options.get(name, default)
        if not isinstance(value, bool):
            problems.append(f"{where}.{name}: must be true or false")
            return default
        return value

    multiple = max(8, facts.vae_scale_factor * (2 if facts.patched else 1))
    settings = LocalSettings(
        path=Path(str(options.get("path") or deployment.model)).expanduser(),
        device=choice("device", DEVICES),
        dtype=choice("dtype", DTYPES),
        steps=number("steps", int, 1, None),
        guidance_scale=number("guidance_scale", float, 0, None),
        strength=number("strength", float, 0.01, None),
        max_concurrency=number("max_concurrency", int, 1, 1),
        max_n=min(16, number("max_n", int, 1, 4)),
        max_edge=number("max_edge", int, 64, max(512, 2 * facts.native_edge)),
        max_aspect=number("max_aspect", float, 1, 3.0),
        size_multiple=number("size_multiple", int, 1, multiple),
        img2img=flag("img2img", facts.class_name in KNOWN_IMG2IMG),
        inpaint=flag("inpaint", facts.class_name in KNOWN_INPAINT),
    )
    if settings.strength is not None and settings.strength > 1:
        problems.append(f"{where}.strength: between 0 and 1")
    if problems:
        raise ConfigError(problems)
    return settings


def capabilities_for(settings: LocalSettings, facts: PipelineFacts) -> Capabilities:
    """Any size within max_edge/max_aspect, sides a multiple of size_multiple; the tiers that
    fit in max_edge; one input image when the pipeline has img2img, a mask when it inpaints."""
    tiers = tuple(tier for tier in TIERS if TIER_EDGE[tier] <= settings.max_edge) or ("512",)
    return Capabilities(
        max_n=settings.max_n,
        aspect_ratios=tuple(r for r in ASPECT_RATIOS if _ratio_fits(r, settings.max_aspect)),
        resolutions=tiers,
        output_formats=("png", "jpeg", "webp"),
        qualities=("auto", "low", "medium", "high"),
        transparent_background=False,
        max_input_images=1 if settings.img2img or settings.inpaint else 0,
        mask=settings.inpaint,
        seed=True,
        arbitrary_sizes=True,
        size_multiple=settings.size_multiple,
        max_aspect=settings.max_aspect,
        max_edge=settings.max_edge,
    )


def _ratio_fits(ratio: str, max_aspect: float) -> bool:
    width, height = (int(side) for side in ratio.split(":"))
    return max(width / height, height / width) <= max_aspect + 1e-9


# --- build: the request → one pipeline call (pure) -----------------------------------------


def output_size(request: ImageRequest, settings: LocalSettings, facts: PipelineFacts) -> Size:
    """The size asked for; else aspect × tier (the native tier when none is given); else an
    edit's first image's size; else the native size. Snapped to the multiple, within max_edge."""
    multiple, limit = settings.size_multiple, settings.max_edge
    if request.size is not None:
        return request.size
    native = Size(facts.native_edge, facts.native_edge)
    if request.aspect_ratio is not None or request.resolution is not None:
        tier = request.resolution or tier_for(native, TIERS)
        return size_for_tier(request.aspect_ratio, tier, multiple=multiple, max_edge=limit)
    if request.input_images:
        info = sniff(request.input_images[0].data)
        if info is not None:
            return fit(Size(info.width, info.height), multiple, limit)
    return fit(native, multiple, limit)


def fit(size: Size, multiple: int, max_edge: int) -> Size:
    """`size` shrunk to max_edge (keeping its aspect), sides rounded to the multiple."""
    scale = min(1.0, max_edge / max(size.width, size.height))
    limit = max_edge // multiple * multiple

    def side(length: float) -> int:
        return min(limit, max(multiple, round(length * scale / multiple) * multiple))

    return Size(side(size.width), side(size.height))


def plan_call(
    request: ImageRequest,
    settings: LocalSettings,
    facts: PipelineFacts,
    default_steps: int | None,
    seed: int,
) -> CallPlan:
    """The pipeline call for `request`. Raises UpstreamError for a bad passthrough value."""
    extra = request.passthrough.get("local", {})
    size = output_size(request, settings, facts)
    mode: Mode = "text2img"
    if request.mask is not None:
        mode = "inpaint"
    elif request.input_images:
        mode = "img2img"
    if mode not in settings.modes:
        raise UpstreamError(
            FailureKind.NOT_FOUND,
            f"this deployment's local pipeline has no {mode} mode (options.{mode} is off or its"
            f" class {facts.class_name or '?'} has none in diffusers)",
            param="mask" if mode == "inpaint" else "image",
        )
    base_steps = settings.steps or default_steps or FALLBACK_STEPS
    steps = max(1, round(base_steps * STEP_SCALE[request.quality]))
    steps = _passthrough_number(extra, "num_inference_steps", int, steps)
    strength = _passthrough_number(extra, "strength", float, settings.strength)
    if mode != "text2img" and strength is not None and strength > 0:
        steps = max(steps, math.ceil(1 / strength))  # img2img runs int(steps × strength) steps
    negative = extra.get("negative_prompt")
    return CallPlan(
        mode=mode,
        prompt=request.prompt,
        width=size.width,
        height=size.height,
        n=request.n,
        seed=seed,
        steps=steps,
        guidance_scale=_passthrough_number(extra, "guidance_scale", float, settings.guidance_scale),
        negative_prompt=None if negative is None else str(negative),
        strength=strength,
        image=request.input_images[0].data if request.input_images else None,
        mask=request.mask.data if request.mask is not None else None,
    )


def _passthrough_number(
    extra: Mapping[str, Any], name: str, kind: type[int] | type[float], default: Any
) -> Any:
    value = extra.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise UpstreamError(
            FailureKind.BAD_REQUEST,
            f"passthrough local.{name} must be a non-negative number, not {value!r}",
            param=name,
        )
    return kind(value)


# --- parse: PIL images → encoded results; failures → UpstreamError (pure) -------------------


def encode(image: Image.Image, fmt: str, compression: int | None) -> bytes:
    """One image as png/jpeg/webp; `compression` (OpenAI's, 100 = best) is the JPEG/WebP quality."""
    out = io.BytesIO()
    options: dict[str, int] = {}
    if fmt in ("jpeg", "webp"):
        options["quality"] = 90 if compression is None else max(1, min(100, compression))
    image.convert("RGB").save(out, format=SAVE_NAMES[fmt], **options)
    return out.getvalue()


def failure_for(exc: Exception) -> UpstreamError:
    """The failure kind of an exception from loading or running a pipeline."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, PipelineUnusable):
        if exc.missing:
            return UpstreamError(FailureKind.NOT_FOUND, exc.message, provider_message=exc.detail)
        kind = FailureKind.CAPACITY if "out of memory" in exc.message else FailureKind.UNAVAILABLE
        return UpstreamError(kind, exc.message, provider_message=exc.detail)
    if isinstance(exc, Stopped):
        return UpstreamError(
            FailureKind.TIMEOUT,
            f"the local pipeline was stopped at step {exc.step}: the request's deadline (or the"
            " provider's timeout_seconds) passed",
        )
    if is_out_of_memory(exc):
        return UpstreamError(
            FailureKind.CAPACITY,
            "the local pipeline ran out of memory; lower n, the size, or max_concurrency",
            provider_message=first_line(exc),
        )
    if isinstance(exc, ValueError):
        # diffusers' check_inputs and schedulers refuse arguments with ValueError (a passthrough
        # num_inference_steps above the scheduler's 1000, say): another run would refuse too.
        return UpstreamError(
            FailureKind.BAD_REQUEST,
            f"the local pipeline refused the call: {first_line(exc)}",
            provider_message=repr(exc),
        )
    return UpstreamError(
        FailureKind.UNAVAILABLE,
        f"the local pipeline failed ({type(exc).__name__}: {first_line(exc)})",
        provider_message=repr(exc),
    )


# --- the provider: a thin async shell --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Done:
    outcome: CallOutcome
    encoded: list[bytes]
    class_name: str
    device: str
    dtype: str
    load_seconds: float


class LocalDiffusersProvider:
    kind: ClassVar[str] = "local"
    default_base_url: ClassVar[str] = "local://"
    needs_key: ClassVar[bool] = False

    def __init__(self, deployment: Deployment, session: aiohttp.ClientSession) -> None:
        self.deployment = deployment
        self.facts = read_facts(_folder(deployment))
        self.settings = settings_for(deployment, self.facts)
        self.capabilities = deployment.capabilities or capabilities_for(self.settings, self.facts)
        self._spec = LoadSpec(
            self.settings.path, self.settings.device, self.settings.dtype, self.settings.modes
        )
        self._slots = asyncio.Semaphore(self.settings.max_concurrency)
        self._workers: set[asyncio.Task[_Done]] = set()
        # What the last pipeline call was given (arguments, init image, mask): for diagnosis
        # and for tests, which have no upstream to look at.
        self.last_call: PipelineCall | None = None

    async def generate(self, request: ImageRequest, key: UpstreamKey | None) -> ImageResult:
        stop_at = time.monotonic() + self.deployment.timeout_seconds
        if request.deadline is not None:
            stop_at = min(stop_at, request.deadline)
        if request.background is Background.TRANSPARENT:
            raise UpstreamError(
                FailureKind.BAD_REQUEST, "local pipelines make opaque images", param="background"
            )
        seed = request.seed if request.seed is not None else random.randrange(2**32)
        try:
            done = await self._in_worker(request, seed, stop_at)
        except Exception as exc:
            raise failure_for(exc) from exc
        return self._result(request, done, seed)

    async def _in_worker(self, request: ImageRequest, seed: int, stop_at: float) -> _Done:
        """Run the call in a worker thread holding one of the deployment's slots.

        The slot is given back when the thread ends, not when the waiting request gives up:
        a torch call cannot be cancelled, and the next call must not share the GPU with it.
        """
        remaining = stop_at - time.monotonic()
        if remaining <= 0:
            raise Stopped("deadline", 0)
        try:
            async with asyncio.timeout(remaining):
                await self._slots.acquire()
        except TimeoutError:
            raise Stopped("deadline", 0) from None
        cancelled = threading.Event()
        worker = asyncio.ensure_future(
            asyncio.to_thread(self._work, request, seed, stop_at, cancelled)
        )
        self._workers.add(worker)
        worker.add_done_callback(self._worker_ended)
        try:
            async with asyncio.timeout(max(0.0, stop_at - time.monotonic()) + 1.0):
                return await asyncio.shield(worker)
        except TimeoutError:
            cancelled.set()
            raise Stopped("deadline", 0) from None
        except asyncio.CancelledError:
            cancelled.set()  # the pipeline stops at its next step
            raise

    def _worker_ended(self, worker: asyncio.Task[_Done]) -> None:
        self._workers.discard(worker)
        self._slots.release()
        if not worker.cancelled():
            worker.exception()  # retrieved: nobody may be waiting for it any more

    def _work(
        self, request: ImageRequest, seed: int, stop_at: float, cancelled: threading.Event
    ) -> _Done:
        """In the worker thread: load (once), plan, run, encode."""
        started = time.monotonic()
        loaded = load(self._spec)  # at once when loaded; else this call waits for the load
        load_seconds = time.monotonic() - started
        if time.monotonic() >= stop_at:
            raise Stopped("deadline", 0)
        plan = plan_call(request, self.settings, self.facts, loaded.default_steps, seed)
        outcome = run(loaded, plan, stop_at, cancelled, on_prepared=self._record)
        fmt = request.output_format or "png"
        encoded = [encode(image, fmt, request.output_compression) for image in outcome.images]
        return _Done(outcome, encoded, loaded.class_name, loaded.device, loaded.dtype, load_seconds)

    def _record(self, call: PipelineCall) -> None:
        self.last_call = call

    def _result(self, request: ImageRequest, done: _Done, seed: int) -> ImageResult:
        fmt = request.output_format or "png"
        images = []
        for data, image in zip(done.encoded, done.outcome.images, strict=True):
            width, height = image.size
            images.append(GeneratedImage(fmt, width, height, HeldB64.from_bytes(data), False))
        if not images:
            raise UpstreamError(FailureKind.EMPTY, "the local pipeline returned no image")
        plan = done.outcome.call.plan
        note = (
            f"local {done.class_name} ({plan.mode}) on {done.device} ({done.dtype}):"
            f" {plan.steps} steps, seed {seed}, {done.outcome.seconds:.2f} s"
        )
        if done.load_seconds >= 0.05:
            note += f"; waited {done.load_seconds:.1f} s for the pipeline to load"
        return ImageResult(
            images=images,
            provider=self.kind,
            deployment=self.deployment.name,
            model=self.deployment.model,
            notes=[note],
        )


def _folder(deployment: Deployment) -> Path:
    return Path(str(deployment.options.get("path") or deployment.model)).expanduser()
