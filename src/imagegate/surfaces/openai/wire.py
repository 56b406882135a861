"""Pydantic models of OpenAI's Images API requests (shared/reference/openai-images.md §3)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr


class GenerationRequest(BaseModel):
    # OpenAI itself rejects unknown arguments ("Unrecognized request argument supplied"); so do we.
    model_config = ConfigDict(extra="forbid")

    prompt: StrictStr
    model: StrictStr | None = None
    n: Annotated[StrictInt, Field(ge=1, le=10)] = 1
    size: StrictStr | None = None
    quality: Literal["auto", "low", "medium", "high", "standard", "hd"] | None = None
    background: Literal["auto", "transparent", "opaque"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: Annotated[StrictInt, Field(ge=0, le=100)] | None = None
    moderation: Literal["auto", "low"] | None = None
    response_format: Literal["url", "b64_json"] | None = None
    stream: StrictBool | None = None
    partial_images: Annotated[StrictInt, Field(ge=0, le=3)] | None = None
    style: Literal["vivid", "natural"] | None = None
    user: StrictStr | None = None
    safety_identifier: StrictStr | None = None
