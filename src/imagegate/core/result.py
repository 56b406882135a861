"""ImageResult and its parts: what came back, from where, after how many attempts, at what cost."""

from __future__ import annotations

from dataclasses import dataclass, field

from imagegate.core.errors import FailureKind
from imagegate.core.geometry import Size
from imagegate.core.imageinfo import MIME_BY_FORMAT
from imagegate.core.payload import B64Source


@dataclass(slots=True, eq=False)
class GeneratedImage:
    """One image: its header facts (read without decoding) and its base64 text."""

    format: str  # png | jpeg | webp | gif
    width: int
    height: int
    source: B64Source
    has_alpha: bool | None = None

    @property
    def mime_type(self) -> str:
        return MIME_BY_FORMAT[self.format]

    @property
    def size(self) -> Size:
        return Size(self.width, self.height)


@dataclass(slots=True)
class Usage:
    """Upstream usage signals, as reported (token counts) — the ledger prices them.

    `cost_usd` is what the upstream itself said the call cost (BFL's `cost`); when present it
    wins over every price table.
    """

    input_text_tokens: int = 0
    input_image_tokens: int = 0
    output_image_tokens: int = 0
    output_text_tokens: int = 0
    cost_usd: float | None = None

    @property
    def input_tokens(self) -> int:
        return self.input_text_tokens + self.input_image_tokens

    @property
    def output_tokens(self) -> int:
        return self.output_image_tokens + self.output_text_tokens

    def add(self, other: Usage) -> None:
        self.input_text_tokens += other.input_text_tokens
        self.input_image_tokens += other.input_image_tokens
        self.output_image_tokens += other.output_image_tokens
        self.output_text_tokens += other.output_text_tokens
        if other.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + other.cost_usd


@dataclass(frozen=True, slots=True)
class Attempt:
    """One upstream call, as recorded by the router (in order, successes and failures alike)."""

    deployment: str
    provider: str
    model: str
    kind: FailureKind | None  # None = it produced images
    status: int | None
    seconds: float
    images: int = 0
    diagnosis: str = ""
    key_id: str | None = None  # which upstream key (its id, never the secret)
    upstream_called: bool = True  # False when the gateway refused before calling (paced, breaker)
    requested: int = 0  # images this call asked for


@dataclass(slots=True, eq=False)
class ImageResult:
    """What a provider returned; the router merges fan-out parts and adds the attempt record.

    When an image's source is still streaming, `usage` and `text` may be completed by the provider
    once the stream has been read to its end (the tail of the upstream answer holds them).
    """

    images: list[GeneratedImage]
    provider: str = ""
    deployment: str = ""
    model: str = ""
    text: str | None = None
    revised_prompt: str | None = None
    usage: Usage = field(default_factory=Usage)
    attempts: list[Attempt] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the gateway fixed or noticed on the way
    warnings: list[str] = field(default_factory=list)  # for the client to act on (retired model)
    parts: list[ImageResult] = field(default_factory=list)  # the provider results merged into this

    def total_usage(self) -> Usage:
        """Usage summed over merged parts. Read it after the images' streams have been consumed."""
        if not self.parts:
            return self.usage
        total = Usage()
        for part in self.parts:
            total.add(part.usage)
        return total

    async def aclose(self) -> None:
        for image in self.images:
            await image.source.aclose()
