"""The simulator: a built-in test and demo provider. No network, no key, real images.

It draws a deterministic picture per prompt (same prompt and seed → same pixels) at exactly the
requested geometry and format, labelled SIMULATED so nobody mistakes it for a model's output.
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
import math
import random
from functools import lru_cache
from typing import ClassVar

import aiohttp
from PIL import Image, ImageDraw

from imagegate.core.deployment import Capabilities, Deployment, UpstreamKey
from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.geometry import TIER_EDGE, Size, ratio_value
from imagegate.core.payload import HeldB64
from imagegate.core.request import Background, ImageRequest
from imagegate.core.result import GeneratedImage, ImageResult, Usage

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
    """The pixel size to draw: the exact size asked for, else aspect ratio × tier, else 1024²."""
    if request.size is not None:
        return request.size
    edge = TIER_EDGE.get(request.resolution or "1K", 1024)
    if request.aspect_ratio is None:
        return Size(edge, edge)
    aspect = ratio_value(request.aspect_ratio)
    width = edge * math.sqrt(aspect)
    height = edge / math.sqrt(aspect)
    return Size(int(round(width / 16) * 16), int(round(height / 16) * 16))


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
