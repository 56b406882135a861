"""The torch side of the local provider: load a saved diffusers pipeline once, run one call.

Everything here blocks (file reads, torch): the provider calls it through `asyncio.to_thread`.
torch and diffusers are imported inside the functions, so importing this module costs nothing
and a gateway without the `local` extra starts (the provider then says which extra to install).

A loaded pipeline is shared by every deployment of the process that names the same folder,
device and dtype: weights are loaded once. Each call runs on a shallow copy of its pipeline with
a scheduler of its own, the request-scoped pattern of diffusers' server example: a scheduler
keeps per-run state (timesteps, step index) and a pipeline keeps per-call attributes
(`_interrupt`, `_guidance_scale`), while the weights are read-only and can be shared.
"""

from __future__ import annotations

import copy
import inspect
import io
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from imagegate.output.mask import to_white_is_edit

log = logging.getLogger(__name__)

Mode = Literal["text2img", "img2img", "inpaint"]

# Text-to-image class → (its img2img class, its inpaint class), built from its components with
# from_pipe: the pairs of diffusers' AutoPipelineForImage2Image / AutoPipelineForInpainting that
# take `image` (and `mask_image`). Named, so a load imports only the classes it uses (the
# AutoPipeline mappings import every pipeline diffusers has). Other classes fall back on them.
DERIVED: dict[str, tuple[str | None, str | None]] = {
    "StableDiffusionPipeline": ("StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline"),
    "StableDiffusionXLPipeline": (
        "StableDiffusionXLImg2ImgPipeline",
        "StableDiffusionXLInpaintPipeline",
    ),
    "StableDiffusion3Pipeline": (
        "StableDiffusion3Img2ImgPipeline",
        "StableDiffusion3InpaintPipeline",
    ),
    "LatentConsistencyModelPipeline": ("LatentConsistencyModelImg2ImgPipeline", None),
    "FluxPipeline": ("FluxImg2ImgPipeline", "FluxInpaintPipeline"),
    "QwenImagePipeline": ("QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline"),
    "ZImagePipeline": ("ZImageImg2ImgPipeline", "ZImageInpaintPipeline"),
}
EXTRA_HINT = "install the optional extra: pip install 'imagegate[local]'"


class PipelineUnusable(Exception):
    """The pipeline cannot be loaded or run. `missing`: nothing usable is there (no folder, not a
    pipeline folder, the extra not installed) as opposed to a folder that failed to load."""

    def __init__(self, message: str, *, missing: bool, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.missing = missing
        self.detail = detail  # for logs only: paths, library messages


class Stopped(Exception):
    """A running call was stopped between two steps: its deadline passed or it was cancelled."""

    def __init__(self, reason: Literal["deadline", "cancelled"], step: int) -> None:
        super().__init__(f"stopped at step {step}: {reason}")
        self.reason = reason
        self.step = step


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to load and where; equal specs share one loaded pipeline."""

    path: Path
    device: str  # cpu | cuda | cuda:N | mps | auto
    dtype: str  # float32 | float16 | bfloat16 | auto
    modes: tuple[Mode, ...] = ("text2img",)


@dataclass(slots=True)
class LoadedPipeline:
    """A pipeline in memory, with the img2img/inpaint pipelines built from its components."""

    views: dict[Mode, Any]  # mode → diffusers pipeline sharing the same weights
    device: str
    dtype: str
    class_name: str
    default_steps: int | None
    load_seconds: float

    def accepts(self, mode: Mode) -> frozenset[str]:
        """The keyword arguments the `mode` pipeline's __call__ takes."""
        return _call_parameters(self.views[mode])


@dataclass(frozen=True, slots=True)
class CallPlan:
    """One pipeline call, in plain values: built from the request without touching torch."""

    mode: Mode
    prompt: str
    width: int
    height: int
    n: int
    seed: int
    steps: int
    guidance_scale: float | None = None
    negative_prompt: str | None = None
    strength: float | None = None  # img2img/inpaint: how far from the input image to move
    image: bytes | None = None  # the input image as sent (any format Pillow reads)
    mask: bytes | None = None  # OpenAI convention (alpha 0 = edit)


@dataclass(frozen=True, slots=True)
class PipelineCall:
    """What a pipeline call was given, as it was given (the provider keeps the last one)."""

    plan: CallPlan
    arguments: Mapping[str, Any]  # the keyword arguments passed, images aside
    image: Image.Image | None = None  # the init image, at the output size
    mask: Image.Image | None = None  # white = edit, black = keep (diffusers' convention)


@dataclass(frozen=True, slots=True)
class CallOutcome:
    images: list[Image.Image]
    call: PipelineCall
    seconds: float  # the pipeline call's own time


_cache: dict[LoadSpec, LoadedPipeline] = {}
_loading: dict[LoadSpec, threading.Lock] = {}
_cache_lock = threading.Lock()  # guards the two dicts, never held while loading


def load(spec: LoadSpec) -> LoadedPipeline:
    """The pipeline for `spec`, loaded on first use and kept for the process's life.

    Raises PipelineUnusable. Concurrent first calls for one spec wait for a single load (a lock
    per spec: a load never holds up calls to pipelines already loaded), and a failed load is
    not remembered: the next call tries again (the folder may have been fixed).
    """
    loaded = _cache.get(spec)
    if loaded is not None:
        return loaded
    with _cache_lock:
        lock = _loading.setdefault(spec, threading.Lock())
    with lock:
        loaded = _cache.get(spec)
        if loaded is None:
            loaded = _load(spec)
            with _cache_lock:
                _cache[spec] = loaded
        return loaded


def _load(spec: LoadSpec) -> LoadedPipeline:
    if not spec.path.is_dir():
        raise PipelineUnusable(
            "the pipeline folder configured for this deployment does not exist; set its `model`"
            " (or options.path) to a folder written by diffusers' pipeline.save_pretrained()",
            missing=True,
            detail=f"no folder at {spec.path}",
        )
    if not (spec.path / "model_index.json").is_file():
        raise PipelineUnusable(
            "the folder configured for this deployment is not a diffusers pipeline (it has no"
            " model_index.json); save one with pipeline.save_pretrained()",
            missing=True,
            detail=f"no model_index.json in {spec.path}",
        )
    try:
        import diffusers  # noqa: PLC0415 - the optional extra, imported only when used
        import torch  # noqa: PLC0415
    except ImportError as exc:
        raise PipelineUnusable(
            f"the local provider needs torch and diffusers: {EXTRA_HINT}",
            missing=True,
            detail=str(exc),
        ) from None
    started = time.monotonic()
    device = resolve_device(spec.device, torch)
    dtype = resolve_dtype(spec.dtype, device)
    try:
        base = diffusers.DiffusionPipeline.from_pretrained(
            str(spec.path), dtype=getattr(torch, dtype), local_files_only=True
        )
        base = base.to(device)
        views: dict[Mode, Any] = {"text2img": base}
        for mode in spec.modes:
            if mode != "text2img":
                views[mode] = _derived(diffusers, base, mode)
    except Exception as exc:
        problem = f"{type(exc).__name__}: {first_line(exc)}"
        message = (
            "the local pipeline ran out of memory while loading"
            if is_out_of_memory(exc)
            else f"the local pipeline could not be loaded ({problem})"
        )
        raise PipelineUnusable(message, missing=False, detail=f"{spec.path}: {exc!r}") from exc
    for view in views.values():
        view.set_progress_bar_config(disable=True)
    seconds = time.monotonic() - started
    class_name = type(base).__name__
    log.info(
        "loaded %s from %s on %s (%s) in %.1f s", class_name, spec.path, device, dtype, seconds
    )
    steps = inspect.signature(type(base).__call__).parameters.get("num_inference_steps")
    default_steps = steps.default if steps is not None and isinstance(steps.default, int) else None
    return LoadedPipeline(views, device, dtype, class_name, default_steps, seconds)


def _derived(diffusers: Any, base: Any, mode: Mode) -> Any:
    """The img2img or inpaint pipeline made of `base`'s components (no weights copied)."""
    named = DERIVED.get(type(base).__name__, (None, None))[0 if mode == "img2img" else 1]
    if named is not None:
        cls = getattr(diffusers, named)
    elif mode == "img2img":
        cls = diffusers.AutoPipelineForImage2Image
    else:
        cls = diffusers.AutoPipelineForInpainting
    return cls.from_pipe(base, dtype=base.dtype)


def resolve_device(device: str, torch: Any) -> str:
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> str:
    """`auto`: half precision on a GPU, full precision on a CPU (where half is slow or missing)."""
    if dtype != "auto":
        return dtype
    return "float32" if device == "cpu" else "float16"


def run(
    loaded: LoadedPipeline,
    plan: CallPlan,
    stop_at: float | None,
    cancelled: threading.Event,
    on_prepared: Callable[[PipelineCall], None] | None = None,
) -> CallOutcome:
    """Run one call on a request-scoped copy of the pipeline; return its PIL images.

    Between two denoising steps a callback checks `stop_at` (a time.monotonic() instant) and
    `cancelled`: past either, the pipeline is interrupted (`_interrupt`, which diffusers'
    pipelines check each step) or, for one that has no such flag, the callback raises. Either
    way the call ends in Stopped. `on_prepared` sees the call's arguments before it runs.
    """
    import torch  # noqa: PLC0415 - the optional extra, imported only when used

    image, mask = prepared_inputs(plan)
    pipe = _scoped(loaded.views[plan.mode])
    accepted = loaded.accepts(plan.mode)
    # An edit makes n images from n copies of (prompt, image, mask): diffusers deprecates
    # duplicating one init image for num_images_per_prompt.
    batch = 1 if plan.mode == "text2img" else plan.n
    arguments: dict[str, Any] = {
        "prompt": plan.prompt if batch == 1 else [plan.prompt] * batch,
        "num_inference_steps": plan.steps,
        "num_images_per_prompt": plan.n // batch,
        "width": plan.width,
        "height": plan.height,
        "guidance_scale": plan.guidance_scale,
        "negative_prompt": (
            plan.negative_prompt
            if batch == 1 or plan.negative_prompt is None
            else [plan.negative_prompt] * batch
        ),
        "strength": plan.strength,
    }
    arguments = {k: v for k, v in arguments.items() if v is not None and k in accepted}
    call = PipelineCall(plan, dict(arguments), image, mask)
    if on_prepared is not None:
        on_prepared(call)
    stop: list[Stopped] = []
    # diffusers' pipelines expose `interrupt` (a property over `_interrupt`) and check it each step
    interruptible = isinstance(getattr(type(pipe), "interrupt", None), property)

    def between_steps(
        pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        if not stop:
            if cancelled.is_set():
                stop.append(Stopped("cancelled", step + 1))
            elif stop_at is not None and time.monotonic() >= stop_at:
                stop.append(Stopped("deadline", step + 1))
        if stop:
            if not interruptible:
                raise stop[0]
            pipeline._interrupt = True
        return tensors

    if "callback_on_step_end" in accepted:
        arguments["callback_on_step_end"] = between_steps
    if image is not None:
        arguments["image"] = [image] * batch
    if mask is not None:
        arguments["mask_image"] = [mask] * batch
    generator = torch.Generator("cpu").manual_seed(plan.seed)
    started = time.monotonic()
    output = pipe(**arguments, generator=generator, output_type="pil")
    seconds = time.monotonic() - started
    if stop:
        raise stop[0]
    images = list(output.images)
    if image is not None and mask is not None:
        # diffusers redraws the whole image (VAE round trip); an edit promises the pixels
        # outside the mask unchanged, so they are laid back from the input.
        images = [Image.composite(out.convert("RGB"), image, mask) for out in images]
    return CallOutcome(images, call, seconds)


def prepared_inputs(plan: CallPlan) -> tuple[Image.Image | None, Image.Image | None]:
    """The init image (RGB) and the mask (L, white = edit) at the output size, as diffusers
    takes them."""
    size = (plan.width, plan.height)
    image: Image.Image | None = None
    mask: Image.Image | None = None
    if plan.image is not None:
        with Image.open(io.BytesIO(plan.image)) as opened:
            image = opened.convert("RGB")
        if image.size != size:
            image = image.resize(size, Image.Resampling.LANCZOS)
    if plan.mask is not None:
        with Image.open(io.BytesIO(to_white_is_edit(plan.mask))) as opened:
            mask = opened.convert("L")
        if mask.size != size:
            mask = mask.resize(size, Image.Resampling.NEAREST)
    return image, mask


def _scoped(pipe: Any) -> Any:
    """A shallow copy of `pipe` with its own scheduler: the same weights, its own run state."""
    scoped = copy.copy(pipe)
    scheduler = pipe.scheduler
    scoped.scheduler = type(scheduler).from_config(scheduler.config)
    return scoped


def _call_parameters(pipe: Any) -> frozenset[str]:
    return frozenset(inspect.signature(type(pipe).__call__).parameters)


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's OutOfMemoryError (CUDA, MPS), recognised without importing torch."""
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def forget_all() -> None:
    """Drop every loaded pipeline (tests; a process that wants its memory back)."""
    with _cache_lock:
        _cache.clear()
        _loading.clear()
