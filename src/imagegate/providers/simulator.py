"""The simulator: a built-in test and demo provider. No network, no key, real images.

It draws a deterministic picture per prompt (same prompt and seed → same pixels) at exactly the
requested geometry and format, labelled SIMULATED so nobody mistakes it for a model's output.
Given input images it edits the first one, visibly, and keeps the pixels outside a mask.
Failure modes are switchable per deployment, for demos and router tests:

    model: sim-image                       healthy
    model: sim-slow                        answers after 5 s (or options.latency_ms)
    model: sim-fail-<kind>                 always fails with that FailureKind (sim-fail-capacity)
    options: {fail_rate: 0.3, fail_kind: unavailable, latency_ms: 200, seed: 7}
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
from functools import lru_cache
from typing import ClassVar

import aiohttp
from PIL import Image, ImageDraw, ImageOps

from imagegate.core.deployment import Capabilities, Deployment, UpstreamKey
from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.geometry import Size, size_for_tier
from imagegate.core.imageinfo import sniff
from imagegate.core.payload import HeldB64
from imagegate.core.request import Background, ImageRequest
from imagegate.core.result import GeneratedImage, ImageResult, Usage
from imagegate.output.mask import edit_region

DEFAULT_SIZE = Size(1024, 1024)
ALL_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "9:21")


class SimulatorProvider:
    kind: ClassVar[str] = "simulator"
    default_base_url: ClassVar[str] = "simulator://local"
    needs_key: ClassVar[bool] = False

    def __init__(self, deployment: Deployment, session: aiohttp.ClientSession) -> None:
        self.deployment = deployment
        self.capabilities = Capabilities(
            max_n=10,
            aspect_ratios=ALL_RATIOS,
            resolutions=("512", "1K", "2K", "4K"),
            output_formats=("png", "jpeg", "webp"),
            qualities=("auto", "low", "medium", "high"),
            transparent_background=True,
            max_input_images=16,
            mask=True,
            seed=True,
            arbitrary_sizes=True,
        )
        options = deployment.options
        self._fail_rate = float(options.get("fail_rate", 0.0))
        self._fail_kind = FailureKind(options.get("fail_kind", FailureKind.UNAVAILABLE))
        self._latency = float(options.get("latency_ms", 0)) / 1000
        model = deployment.model
        if model.startswith("sim-fail-"):
            self._fail_rate, self._fail_kind = 1.0, FailureKind(model.removeprefix("sim-fail-"))
        if model == "sim-slow" and "latency_ms" not in options:
            self._latency = 5.0
        self._random = random.Random(options.get("seed"))

    async def generate(self, request: ImageRequest, key: UpstreamKey | None) -> ImageResult:
        if self._latency:
            await asyncio.sleep(self._latency)
        if self._random.random() < self._fail_rate:
            raise simulated_failure(self._fail_kind)
        size = output_size(request)
        fmt = request.output_format or "png"
        transparent = request.background is Background.TRANSPARENT and fmt != "jpeg"
        images = []
        for index in range(request.n):
            if request.input_images:
                data = await asyncio.to_thread(draw_edit, request, index, size, fmt, transparent)
            else:
                data = await asyncio.to_thread(
                    draw_image, request.prompt, request.seed, index, size, fmt, transparent
                )
            images.append(
                GeneratedImage(fmt, size.width, size.height, HeldB64.from_bytes(data), transparent)
            )
        return ImageResult(
            images=images,
            provider=self.kind,
            deployment=self.deployment.name,
            model=self.deployment.model,
            text="Simulated image (imagegate simulator, not a real model).",
            usage=Usage(input_text_tokens=len(request.prompt.split())),
        )


def simulated_failure(kind: FailureKind) -> UpstreamError:
    status = {
        FailureKind.QUOTA_ZERO: 429,
        FailureKind.RATE_LIMITED: 429,
        FailureKind.QUOTA_STUCK: 429,
        FailureKind.CAPACITY: 503,
        FailureKind.BILLING: 400,
        FailureKind.AUTH: 401,
        FailureKind.BAD_REQUEST: 400,
        FailureKind.NOT_FOUND: 404,
        FailureKind.SAFETY: 200,
        FailureKind.EMPTY: 200,
        FailureKind.UNAVAILABLE: 503,
        FailureKind.TIMEOUT: 504,
        FailureKind.MISMATCH: 200,
    }[kind]
    return UpstreamError(
        kind,
        f"simulated {kind} failure (simulator deployment configured to fail)",
        status=status,
        retry_after=1.0 if kind is FailureKind.RATE_LIMITED else None,
    )


def output_size(request: ImageRequest) -> Size:
    """The pixel size to draw: the size asked for, else an edit's first image's, else aspect
    ratio × tier (1024² when neither is given)."""
    if request.size is not None:
        return request.size
    if request.input_images and request.aspect_ratio is None and request.resolution is None:
        # An edit with no size keeps the first image's, as OpenAI's `auto` does.
        info = sniff(request.input_images[0].data)
        if info is not None:
            return Size(info.width, info.height)
    return size_for_tier(request.aspect_ratio, request.resolution)


@lru_cache(maxsize=64)
def draw_image(
    prompt: str, seed: int | None, index: int, size: Size, fmt: str, transparent: bool
) -> bytes:
    """A deterministic picture for (prompt, seed, index): coloured shapes and a SIMULATED label."""
    digest = hashlib.sha256(f"{prompt}\0{seed}\0{index}".encode()).digest()
    rng = random.Random(digest)
    mode = "RGBA" if transparent else "RGB"
    background = (0, 0, 0, 0) if transparent else tuple(digest[:3])
    image = Image.new(mode, (size.width, size.height), background)
    pen = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rng.randrange(size.width), rng.randrange(size.height)
        radius = rng.randrange(8, max(9, min(size.width, size.height) // 3))
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256), 255)
        box = (x0 - radius, y0 - radius, x0 + radius, y0 + radius)
        if rng.random() < 0.5:
            pen.ellipse(box, fill=colour[: len(mode)])
        else:
            pen.rectangle(box, fill=colour[: len(mode)])
    label = f"SIMULATED {size.width}x{size.height} #{index + 1}"
    pen.text((8, 8), label, fill=(255, 255, 255, 255)[: len(mode)])
    out = io.BytesIO()
    save_format = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt]
    image.save(out, format=save_format, **({"quality": 90} if fmt != "png" else {}))
    return out.getvalue()


def draw_edit(
    request: ImageRequest, index: int, size: Size, fmt: str, transparent: bool = False
) -> bytes:
    """A visible, deterministic "edit" of the first input image, honouring the mask.

    The first input is scaled to `size`, its colours inverted, and shapes drawn per prompt and
    index, labelled SIMULATED EDIT. With a mask, every pixel outside the mask's edit area is the
    input's own (output/mask.py), as an OpenAI edit promises, so tests can check both sides.
    `transparent` keeps the input's alpha channel (a transparent background was asked for).
    """
    with Image.open(io.BytesIO(request.input_images[0].data)) as opened:
        scaled = opened.convert("RGBA").resize((size.width, size.height))
    base = scaled.convert("RGB")
    edited = ImageOps.invert(base)
    digest = hashlib.sha256(f"{request.prompt}\0{request.seed}\0{index}".encode()).digest()
    rng = random.Random(digest)
    pen = ImageDraw.Draw(edited)
    for _ in range(6):
        x0, y0 = rng.randrange(size.width), rng.randrange(size.height)
        radius = rng.randrange(8, max(9, min(size.width, size.height) // 4))
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        pen.ellipse((x0 - radius, y0 - radius, x0 + radius, y0 + radius), fill=colour)
    label = f"SIMULATED EDIT of {len(request.input_images)} image(s) #{index + 1}"
    pen.text((8, 8), label, fill=(255, 255, 255))
    if request.mask is not None:
        region = edit_region(request.mask.data).resize(edited.size, Image.Resampling.NEAREST)
        edited = Image.composite(edited, base, region)
    if transparent:
        edited.putalpha(scaled.getchannel("A"))
    out = io.BytesIO()
    save_format = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt]
    edited.save(out, format=save_format, **({"quality": 90} if fmt != "png" else {}))
    return out.getvalue()
