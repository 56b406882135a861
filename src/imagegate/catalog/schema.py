"""The catalog's file format, shared by the shipped data files and the config's `catalog:`.

A shipped file (`catalog/data/<kind>.yaml`) holds one provider kind's models:

    provider: openai
    models:
      gpt-image-1.5:
        lifecycle: stable                    # preview | stable | deprecated | retired
        capabilities: {max_n: 10, sizes: [1024x1024, 1536x1024, 1024x1536], ...}
        price: {per_image_by_tier: {1024x1024/low: 0.009, ...}}
        price_source: https://openai.com/api/pricing/ (as restated by ...)
        price_date: 2026-11-21
      gpt-image-1:
        like: gpt-image-1.5                  # start from another entry of the same kind
        lifecycle: retired
        retired_on: 2026-10-23
        successor: gpt-image-1.5

`like: other-kind/model` starts from another kind's entry (Vertex's Gemini models are the
Developer API's plus output formats); a model id of the same kind wins, since fal and Replicate
ids hold slashes. Fields given replace the inherited ones; `capabilities` and `price` merge
field by field, and `null` clears an inherited field.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Lifecycle = Literal["preview", "stable", "deprecated", "retired"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CapabilitySettings(_Strict):
    """Capabilities (core/deployment.py); every field optional so entries can merge."""

    max_n: Annotated[int, Field(ge=1, le=16)] | None = None
    sizes: list[str] | None = None
    aspect_ratios: list[str] | None = None
    resolutions: list[str] | None = None
    output_formats: list[Literal["png", "jpeg", "webp"]] | None = None
    qualities: list[Literal["auto", "low", "medium", "high"]] | None = None
    transparent_background: bool | None = None
    max_input_images: Annotated[int, Field(ge=0, le=64)] | None = None
    mask: bool | None = None
    seed: bool | None = None
    arbitrary_sizes: bool | None = None
    size_multiple: Annotated[int, Field(ge=1)] | None = None
    max_aspect: Annotated[float, Field(ge=1)] | None = None
    max_edge: Annotated[int, Field(ge=64)] | None = None
    max_pixels: Annotated[int, Field(ge=4096)] | None = None
    max_short_edge: Annotated[int, Field(ge=64)] | None = None
    aspect_tolerance: Annotated[float, Field(ge=0, le=0.5)] | None = None


class ModelSettings(_Strict):
    like: str | None = None
    description: str | None = None
    lifecycle: Lifecycle | None = None
    retired_on: datetime.date | None = None
    successor: str | None = None
    capabilities: CapabilitySettings = CapabilitySettings()
    price: dict[str, Any] = {}  # the fields of config's PriceSettings
    price_source: str | None = None
    price_date: datetime.date | None = None


class CatalogFile(_Strict):
    provider: str
    models: dict[str, ModelSettings]
