"""Real, deterministic image bytes for fake upstreams, made fast and cached per arguments.

The pixels are a smooth three-way gradient with seeded noise in the low bits. The noise is there
so that PNG cannot squeeze the image to nothing: a 1024x1024 PNG comes out near 1.5 MB of base64,
the size real Gemini and OpenAI answers have, which is what throughput benchmarks need to carry.
"""

from __future__ import annotations

import base64
import functools
import io
import random
from typing import Literal

from PIL import Image, ImageChops

ImageFormat = Literal["png", "jpeg", "webp"]

# Low bits of noise per channel (R, G, B). With PNG compress_level 2 this lands a 1024x1024 image
# at ~1.52 MB of base64 (test_images.py pins the range); 2 bits everywhere overshoots to ~1.8 MB.
_NOISE_BITS = (2, 1, 1)
# Level 2 is ~4x faster than the default 6 on noisy pixels and the size is tuned for it.
_PNG_LEVEL = 2
_PILLOW_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def _channel_luts() -> tuple[list[int], list[int]]:
    """Per-channel lookup tables: one keeps the noise bits, the other clears them."""
    keep: list[int] = []
    clear: list[int] = []
    for bits in _NOISE_BITS:
        mask = (1 << bits) - 1
        keep += [value & mask for value in range(256)]
        clear += [value & ~mask & 0xFF for value in range(256)]
    return keep, clear


@functools.lru_cache(maxsize=64)
def image_pixels(width: int, height: int) -> Image.Image:
    """The RGB pixels for a size; treat the returned image as read-only (it is cached)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    keep, clear = _channel_luts()
    ramp = Image.linear_gradient("L")
    gradient = Image.merge(
        "RGB",
        (
            ramp.resize((width, height)),
            ramp.rotate(90).resize((width, height)),
            ramp.rotate(45).resize((width, height)),
        ),
    ).point(clear)
    # Seeded by the size so every process draws the same image for the same request.
    rng = random.Random(width * 100_003 + height)
    noise = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3)).point(keep)
    # The gradient has its low bits cleared, so adding the noise never clips.
    return ImageChops.add(gradient, noise)


def encoded_image(
    width: int, height: int, fmt: ImageFormat = "png", transparent: bool = False
) -> bytes:
    """The image encoded as PNG, JPEG or WebP bytes (cached per arguments).

    ``transparent`` (PNG and WebP) adds an alpha channel whose outer eighth is fully clear, as a
    model asked for a transparent background draws its subject on nothing.
    """
    return _encoded_image(width, height, fmt, transparent)


def encoded_image_b64(
    width: int, height: int, fmt: ImageFormat = "png", transparent: bool = False
) -> bytes:
    """Standard-alphabet, padded base64 (ASCII bytes) of :func:`encoded_image` (cached)."""
    return _encoded_image_b64(width, height, fmt, transparent)


def clear_cache() -> None:
    """Forget every cached image (tests of determinism start from nothing)."""
    for cached in (image_pixels, _encoded_image, _encoded_image_b64):
        cached.cache_clear()


# The public functions above wrap these so that type checkers still see their signatures,
# which functools.lru_cache erases.


@functools.lru_cache(maxsize=64)
def _encoded_image(width: int, height: int, fmt: ImageFormat, transparent: bool) -> bytes:
    if fmt not in _PILLOW_FORMAT:
        raise ValueError(f"unsupported format {fmt!r}")
    buffer = io.BytesIO()
    pixels = image_pixels(width, height)
    if transparent and fmt != "jpeg":
        alpha = Image.new("L", (width, height), 0)
        alpha.paste(255, (width // 8, height // 8, width - width // 8, height - height // 8))
        pixels = pixels.copy()
        pixels.putalpha(alpha)
    if fmt == "png":
        pixels.save(buffer, "PNG", compress_level=_PNG_LEVEL)
    elif fmt == "jpeg":
        pixels.save(buffer, "JPEG", quality=90)
    else:
        # method=0 is the fastest WebP encoder setting; these bytes only need to be a real WebP.
        pixels.save(buffer, "WEBP", quality=80, method=0)
    return buffer.getvalue()


@functools.lru_cache(maxsize=64)
def _encoded_image_b64(width: int, height: int, fmt: ImageFormat, transparent: bool) -> bytes:
    return base64.b64encode(_encoded_image(width, height, fmt, transparent))
