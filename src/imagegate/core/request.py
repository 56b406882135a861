"""ImageRequest: what a client asked for, in the gateway's terms, whatever surface it used."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imagegate.core.geometry import Size, ratio_value
from imagegate.core.result import GeneratedImage

# Called with each partial image and its 0-based index, as an upstream streams them.
PartialSink = Callable[[GeneratedImage, int], Awaitable[None]]


class Quality(enum.StrEnum):
    AUTO = "auto"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Background(enum.StrEnum):
    AUTO = "auto"
    TRANSPARENT = "transparent"
    OPAQUE = "opaque"


@dataclass(frozen=True, slots=True)
class InputImage:
    """An image the client sent (an edit input or a mask), as its encoded bytes."""

    data: bytes
    mime_type: str


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """One client request.

    Geometry is either a pixel `size`, or an `aspect_ratio` with a `resolution` tier
    (512/1K/2K/4K), or neither (the model's default). `deadline` is a `time.monotonic()` instant
    after which no attempt may start. `passthrough` holds provider-specific fields that have no
    unified meaning, keyed by provider kind, and is forwarded, never dropped.

    `input_images` are the images to edit or take as references, in the client's order.
    `mask` is always in OpenAI's convention, whatever the surface: a PNG with an alpha channel,
    the pixel size of the first input image, whose fully transparent pixels (alpha 0) mark the
    area to edit. Surfaces validate it; providers convert it to their own convention in their
    build functions (output/mask.py).
    """

    prompt: str
    model: str
    n: int = 1
    size: Size | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    quality: Quality = Quality.AUTO
    output_format: str | None = None  # png | jpeg | webp; None = what the model gives
    output_compression: int | None = None
    background: Background = Background.AUTO
    seed: int | None = None
    input_images: tuple[InputImage, ...] = ()
    mask: InputImage | None = None
    client_id: str | None = None
    request_id: str = ""
    deadline: float | None = None
    idempotency_key: str | None = None
    user: str | None = None
    passthrough: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Set by a surface streaming its answer with partial images (OpenAI `stream` with
    # `partial_images`): providers whose upstream streams partials pass each one on at once;
    # others make the final images only.
    partials: PartialSink | None = field(default=None, compare=False)

    @property
    def wanted_aspect(self) -> float | None:
        if self.size is not None:
            return self.size.aspect
        if self.aspect_ratio is not None:
            return ratio_value(self.aspect_ratio)
        return None
