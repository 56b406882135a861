"""Deployment: one concrete way to serve a model — provider, upstream model, keys, limits, price."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class UpstreamKey:
    """An upstream credential. `id` is safe to log and book; `secret` stays in the provider call."""

    id: str
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Limits:
    images_per_minute: int | None = None
    requests_per_minute: int | None = None
    requests_per_day: int | None = None
    concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class Price:
    """List price in USD: per image (by tier, size and quality), per input image, per token where
    the provider bills tokens. `ledger/pricing.py` is the one place that combines these."""

    per_image: float = 0.0
    # keys: a tier ("1K"), a pixel size ("1536x1024"), either with "/<quality>" ("1K/high")
    per_image_by_tier: Mapping[str, float] = field(default_factory=dict)
    per_image_by_quality: Mapping[str, float] = field(default_factory=dict)
    per_input_image: float = 0.0
    per_million_input_tokens: float = 0.0
    per_million_input_text_tokens: float | None = None  # None: per_million_input_tokens
    per_million_input_image_tokens: float | None = None  # None: per_million_input_tokens
    per_million_output_text_tokens: float = 0.0
    per_million_output_image_tokens: float = 0.0
    batch_discount: float = 0.0  # share taken off for batch requests (0.5 = half price)


def calls_for(n: int, max_n: int) -> list[int]:
    """How many images each upstream call asks for when `n` are wanted from a deployment that
    makes at most `max_n` per call: the router's fan-out, which pricing must follow too."""
    per_call = max(1, max_n)
    return [min(per_call, n - start) for start in range(0, n, per_call)]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a deployment can honour. The router only sends it requests it can serve."""

    max_n: int = 1  # images per upstream call; above this the router fans out
    sizes: tuple[str, ...] | None = None  # exact WxH list; None = any size (mapped by provider)
    aspect_ratios: tuple[str, ...] | None = None
    resolutions: tuple[str, ...] | None = None
    output_formats: tuple[str, ...] = ("png",)
    qualities: tuple[str, ...] = ("auto",)
    transparent_background: bool = False
    max_input_images: int = 0
    mask: bool = False
    seed: bool = False  # a seed is sent upstream (best effort on some models)
    arbitrary_sizes: bool = False  # any WxH within the three rules below
    size_multiple: int = 1
    max_aspect: float | None = None
    max_edge: int | None = None
    max_pixels: int | None = None  # width × height at most
    max_short_edge: int | None = None  # the shorter side at most
    # how far an image's aspect may be from the one asked before it is a `mismatch`
    aspect_tolerance: float = 0.03


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str
    provider_name: str  # the configured provider entry
    kind: str  # provider kind: simulator | gemini | openai | ...
    model: str  # the upstream model name
    base_url: str
    keys: tuple[UpstreamKey, ...] = ()
    limits: Limits = field(default_factory=Limits)
    price: Price = field(default_factory=Price)
    timeout_seconds: float = 120.0
    options: Mapping[str, Any] = field(default_factory=dict)
    # From the model catalog and the config's overrides; None: the provider's own defaults.
    capabilities: Capabilities | None = None
