"""Pydantic models of a Gemini generateContent request (shared/reference/gemini-image.md §3).

Google's proto-JSON parser takes every field by its lowerCamelCase name or its snake_case one,
at every level, and google-genai relies on it (it sends `inlineData` holding `mime_type`); so
every model here accepts both. Unknown fields are rejected, as Google rejects them, except in
the objects the gateway forwards to Gemini without reading (thinkingConfig, tools, ...): those
are typed `Any` and travel as the client wrote them.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    AliasChoices,
    AliasGenerator,
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictInt,
    StrictStr,
)
from pydantic.alias_generators import to_camel


def _either_spelling(name: str) -> AliasChoices:
    return AliasChoices(to_camel(name), name)


class _Wire(BaseModel):
    # Serialised by camelCase alias: what the gateway forwards, Gemini's own output spelling.
    model_config = ConfigDict(
        alias_generator=AliasGenerator(
            validation_alias=_either_spelling, serialization_alias=to_camel
        ),
        extra="forbid",
        frozen=True,
    )


class Blob(_Wire):
    mime_type: StrictStr = ""
    data: StrictStr  # base64, either alphabet, padding optional


class Part(_Wire):
    text: StrictStr | None = None
    inline_data: Blob | None = None
    file_data: Any = None
    thought: StrictBool | None = None
    thought_signature: StrictStr | None = None
    function_call: Any = None
    function_response: Any = None
    executable_code: Any = None
    code_execution_result: Any = None
    video_metadata: Any = None
    media_resolution: Any = None
    part_metadata: Any = None

    @property
    def is_image(self) -> bool:
        """An inline image the model is meant to see (thought images are its scratch work)."""
        return self.inline_data is not None and not self.thought


class Content(_Wire):
    role: StrictStr | None = None  # optional on a single turn: it is the user's
    parts: list[Part]


class ImageConfig(_Wire):
    aspect_ratio: StrictStr | None = None
    image_size: StrictStr | None = None
    # Vertex AI's output controls: the gateway honours them by transcoding.
    output_mime_type: StrictStr | None = None
    output_compression_quality: StrictInt | None = None
    # Vertex AI only; forwarded to Gemini, which answers for them.
    person_generation: Any = None
    prominent_people: Any = None
    image_output_options: Any = None


class GenerationConfig(_Wire):
    candidate_count: StrictInt | None = None
    seed: StrictInt | None = None
    response_modalities: list[StrictStr] | None = None
    image_config: ImageConfig | None = None
    # Forwarded to Gemini as they are; they mean nothing to other providers.
    temperature: Any = None
    top_p: Any = None
    top_k: Any = None
    max_output_tokens: Any = None
    stop_sequences: Any = None
    presence_penalty: Any = None
    frequency_penalty: Any = None
    response_mime_type: Any = None
    response_schema: Any = None
    response_json_schema: Any = None
    response_logprobs: Any = None
    logprobs: Any = None
    media_resolution: Any = None
    speech_config: Any = None
    thinking_config: Any = None
    enable_enhanced_civic_answers: Any = None
    audio_transcription_config: Any = None


class GenerateContentRequest(_Wire):
    contents: list[Content]
    generation_config: GenerationConfig | None = None
    # The model is in the path; Google accepts (and ignores) it in the body too.
    model: StrictStr | None = None
    # Forwarded to Gemini as they are.
    safety_settings: Any = None
    system_instruction: Any = None
    tools: Any = None
    tool_config: Any = None
    cached_content: Any = None
    service_tier: Any = None
    store: Any = None
    continuation_token: Any = None
