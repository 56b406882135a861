"""Pydantic models of OpenAI's Images API requests (shared/reference/openai-images.md §3, §4)."""

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


class EditRequest(BaseModel):
    """The scalar fields of `POST /v1/images/edits` (reference §4); the images travel apart.

    Not strict: multipart sends every scalar as text ("2", "true"), which pydantic's lax mode
    reads as numbers and booleans. The JSON form is validated with `strict=True`.
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str
    model: str | None = None
    n: Annotated[int, Field(ge=1, le=10)] = 1
    size: str | None = None
    # `hd` is not in the edit enum; `standard` is dall-e-2's only quality.
    quality: Literal["auto", "low", "medium", "high", "standard"] | None = None
    background: Literal["auto", "transparent", "opaque"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: Annotated[int, Field(ge=0, le=100)] | None = None
    input_fidelity: Literal["high", "low"] | None = None
    moderation: Literal["auto", "low"] | None = None
    response_format: Literal["url", "b64_json"] | None = None
    stream: bool | None = None
    partial_images: Annotated[int, Field(ge=0, le=3)] | None = None
    user: str | None = None
    safety_identifier: str | None = None
