"""The Gemini Developer API's image wire format as the fake speaks it (reference gemini-image.md).

Pure functions and tables only: the model table and pixel sizes, request validation (raising
:class:`RpcError`, a google.rpc.Status), and the response documents. Image data appear in the
documents as ``image_slot(0)`` placeholders that the server splices the cached base64 into.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from tests.fakes.server import image_slot

TYPE_PREFIX = "type.googleapis.com/google.rpc."
TEN_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
FOURTEEN_RATIOS = (*TEN_RATIOS, "1:4", "4:1", "1:8", "8:1")

# 1K sizes: gemini-2.5-flash-image's table in Google's docs. The four extreme ratios exist only on
# 3.1 Flash and have no published table; these keep ~1 MP with sides divisible by 16 (our choice).
PIXELS_1K: Mapping[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "4:5": (896, 1152),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
    "1:4": (512, 2048),
    "4:1": (2048, 512),
    "1:8": (384, 3072),
    "8:1": (3072, 384),
}
# Sources disagree on exact higher-tier sizes (the reference says not to hard-code them); scaling
# the 1K table keeps the fake predictable. Real 3 Pro 16:9 1K is reportedly 1376x768 (unverified).
TIER_SCALE: Mapping[str, float] = {"512": 0.5, "1K": 1.0, "2K": 2.0, "4K": 4.0}


@dataclass(frozen=True, slots=True)
class GeminiModel:
    name: str
    display_name: str
    ratios: tuple[str, ...]
    # Allowed imageSize values; empty means the model ignores the field (2.5 Flash Image).
    sizes: tuple[str, ...]
    # Output image tokens per tier; the reference marks all of these (unverified).
    image_tokens: Mapping[str, int]
    thoughts_tokens: int


_PRO_TOKENS = {"1K": 1120, "2K": 1120, "4K": 2000}
_FLASH_31_TOKENS = {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520}  # our guess, proportional

MODELS: Mapping[str, GeminiModel] = {
    model.name: model
    for model in (
        GeminiModel("gemini-2.5-flash-image", "Nano Banana", TEN_RATIOS, (), {"1K": 1290}, 0),
        GeminiModel(
            "gemini-3-pro-image-preview", "Nano Banana Pro (preview)", TEN_RATIOS,
            ("1K", "2K", "4K"), _PRO_TOKENS, 212,
        ),
        GeminiModel(
            "gemini-3-pro-image", "Nano Banana Pro", TEN_RATIOS, ("1K", "2K", "4K"),
            _PRO_TOKENS, 212,
        ),
        GeminiModel(
            "gemini-3.1-flash-image-preview", "Nano Banana 2 (preview)", FOURTEEN_RATIOS,
            ("512", "1K", "2K", "4K"), _FLASH_31_TOKENS, 96,
        ),
        GeminiModel(
            "gemini-3.1-flash-image", "Nano Banana 2", FOURTEEN_RATIOS,
            ("512", "1K", "2K", "4K"), _FLASH_31_TOKENS, 96,
        ),
    )
}  # fmt: skip

INPUT_IMAGE_TOKENS = 258
HELLO_TEXT = "Here is your image."
# A fixed opaque blob: clients must echo it back on multi-turn edits, never parse it.
THOUGHT_SIGNATURE = base64.b64encode(bytes(range(7, 256, 3)) * 2).decode()

_TOP_FIELDS = frozenset({
    "model", "contents", "generationConfig", "safetySettings", "tools", "toolConfig",
    "systemInstruction", "cachedContent", "serviceTier", "store", "continuationToken",
})  # fmt: skip
_CONFIG_FIELDS = frozenset({
    "temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences", "seed",
    "presencePenalty", "frequencyPenalty", "responseMimeType", "responseSchema",
    "responseJsonSchema", "responseLogprobs", "logprobs", "responseModalities", "mediaResolution",
    "speechConfig", "thinkingConfig", "imageConfig", "enableEnhancedCivicAnswers",
    "audioTranscriptionConfig",
})  # fmt: skip
# Vertex-only fields such as outputMimeType are unknown here: the Developer API has only these two.
_IMAGE_CONFIG_FIELDS = frozenset({"aspectRatio", "imageSize"})
_CONTENT_FIELDS = frozenset({"role", "parts"})
_MODALITIES = frozenset({"TEXT", "IMAGE", "AUDIO", "MODALITY_UNSPECIFIED"})


class RpcError(Exception):
    """A google.rpc.Status error answer: HTTP code, canonical status, message, details."""

    def __init__(
        self, code: int, status: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(f"{code} {status}: {message}")
        self.code = code
        self.status = status
        self.message = message
        self.details = details or []

    def doc(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def invalid_argument(message: str, field: str | None = None) -> RpcError:
    violation = {"field": field, "description": message} if field else {"description": message}
    detail = {"@type": TYPE_PREFIX + "BadRequest", "fieldViolations": [violation]}
    return RpcError(400, "INVALID_ARGUMENT", message, [detail])


def api_key_invalid() -> RpcError:
    """The 400 a bad key gets; the reference quotes it verbatim from several captures."""
    message = "API key not valid. Please pass a valid API key."
    return RpcError(
        400,
        "INVALID_ARGUMENT",
        message,
        [
            {
                "@type": TYPE_PREFIX + "ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {"@type": TYPE_PREFIX + "LocalizedMessage", "locale": "en-US", "message": message},
        ],
    )


def api_key_missing() -> RpcError:
    # Google answers a request with no key at all with this 403, not the 400 above (wording seen
    # in many public reports; not in the reference, so unverified).
    return RpcError(
        403,
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
    )


def model_not_found(model: str, version: str) -> RpcError:
    return RpcError(
        404,
        "NOT_FOUND",
        f"models/{model} is not found for API version {version}, or is not supported for "
        "generateContent. Call ListModels to see the list of available models and their "
        "supported methods.",
    )


def invalid_json() -> RpcError:
    return invalid_argument("Invalid JSON payload received. Unexpected token.")


# --- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    """What the fake needs from a valid generateContent body."""

    prompt_chars: int
    input_images: int
    modalities: frozenset[str]  # empty when the request omitted responseModalities
    aspect_ratio: str
    image_size: str

    @property
    def wants_image(self) -> bool:
        # Omitted modalities still give an image on current image models (reference §3).
        return not self.modalities or "IMAGE" in self.modalities

    @property
    def wants_text(self) -> bool:
        return not self.modalities or "TEXT" in self.modalities

    @property
    def pixels(self) -> tuple[int, int]:
        return pixel_size(self.aspect_ratio, self.image_size)


def pixel_size(aspect_ratio: str, image_size: str) -> tuple[int, int]:
    width, height = PIXELS_1K[aspect_ratio]
    scale = TIER_SCALE[image_size]
    return int(width * scale), int(height * scale)


def parse_generate(body: Mapping[str, Any], model: GeminiModel) -> GenerateRequest:
    """Validate a generateContent body the way the API does; raises RpcError (400)."""
    _check_known(body, _TOP_FIELDS, None)
    prompt_chars, input_images = _parse_contents(_field(body, "contents", None))
    config = _object(_field(body, "generationConfig", None), "generation_config")
    _check_known(config, _CONFIG_FIELDS, "generation_config")
    _check_candidate_count(_field(config, "candidateCount", "generation_config"), model)
    modalities = _parse_modalities(_field(config, "responseModalities", "generation_config"))
    image_config = _object(
        _field(config, "imageConfig", "generation_config"), "generation_config.image_config"
    )
    _check_known(image_config, _IMAGE_CONFIG_FIELDS, "generation_config.image_config")
    where = "generation_config.image_config"
    aspect_ratio = _parse_aspect_ratio(_field(image_config, "aspectRatio", where), model)
    image_size = _parse_image_size(_field(image_config, "imageSize", where), model)
    return GenerateRequest(prompt_chars, input_images, modalities, aspect_ratio, image_size)


def _snake(camel: str) -> str:
    return re.sub(r"[A-Z]", lambda match: "_" + match.group().lower(), camel)


def _field(obj: Mapping[str, Any], camel: str, where: str | None) -> Any:
    """Read a field by its camelCase or snake_case name: the proto-JSON parser takes both."""
    snake = _snake(camel)
    if camel != snake and camel in obj and snake in obj:
        # Sending both spellings is likely rejected as a duplicate (reference: unverified).
        path = f"{where}.{snake}" if where else snake
        raise invalid_argument(
            f'Invalid JSON payload received. Duplicate field "{camel}" ("{snake}").', path
        )
    return obj[camel] if camel in obj else obj.get(snake)


def _check_known(obj: Mapping[str, Any], known: frozenset[str], where: str | None) -> None:
    for name in obj:
        if name not in known and _camel(name) not in known:
            at = f" at '{where}'" if where else ""
            message = (
                f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.'
            )
            raise invalid_argument(message, where)


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_argument(
            f"Invalid JSON payload received. Expected an object for '{where}'.", where
        )
    return value


def _parse_contents(contents: Any) -> tuple[int, int]:
    if not isinstance(contents, list) or not contents:
        raise invalid_argument(
            "* GenerateContentRequest.contents: contents is not specified\n", "contents"
        )
    prompt_chars = input_images = 0
    for index, item in enumerate(contents):
        where = f"contents[{index}]"
        content = _object(item, where)
        _check_known(content, _CONTENT_FIELDS, where)
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise invalid_argument(
                f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n",
                f"{where}.parts",
            )
        for part_index, part in enumerate(parts):
            chars, images = _parse_part(_object(part, f"{where}.parts[{part_index}]"), where)
            prompt_chars += chars
            input_images += images
    return prompt_chars, input_images


def _parse_part(part: Mapping[str, Any], where: str) -> tuple[int, int]:
    text = part.get("text")
    chars = len(text) if isinstance(text, str) and not part.get("thought") else 0
    inline = _field(part, "inlineData", where)
    if inline is not None:
        return chars, _check_inline_image(_object(inline, f"{where}.inline_data"), where)
    file_data = _field(part, "fileData", where)
    if file_data is not None:
        mime = _field(_object(file_data, f"{where}.file_data"), "mimeType", where) or ""
        return chars, int(str(mime).startswith("image/"))
    return chars, 0


def _check_inline_image(inline: Mapping[str, Any], where: str) -> int:
    """Decode inline data (either base64 alphabet); 1 if it is an image, raising if it lies."""
    mime = str(_field(inline, "mimeType", where) or "")
    data = inline.get("data")
    raw = _decode_bytes(data, f"{where}.inline_data.data")
    if not mime.startswith("image/"):
        return 0
    try:
        with Image.open(io.BytesIO(raw)) as image:
            image.size  # noqa: B018 - opening reads only the header; the size proves it parsed
    except (UnidentifiedImageError, OSError) as error:
        raise invalid_argument(
            "Unable to process input image. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting"
        ) from error
    return 1


def _decode_bytes(data: Any, where: str) -> bytes:
    """Proto-JSON bytes: either base64 alphabet, optional padding (the SDK sends URL-safe)."""
    if not isinstance(data, str):
        raise invalid_argument(f"Invalid value at '{where}' (TYPE_BYTES), {data!r}", where)
    text = data.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as error:
        shown = data[:40]
        raise invalid_argument(
            f"Invalid value at '{where}' (TYPE_BYTES), Base64 decoding failed for \"{shown}\"",
            where,
        ) from error


def _check_candidate_count(count: Any, model: GeminiModel) -> None:
    # Image models reject more than one candidate (reference: unverified); fan out instead.
    if count is None:
        return
    if not isinstance(count, int) or isinstance(count, bool):
        where = "generation_config.candidate_count"
        raise invalid_argument(f"Invalid value at '{where}' (TYPE_INT32), {count!r}", where)
    if count > 1:
        raise invalid_argument(
            f"Multiple candidates is not enabled for models/{model.name}",
            "generation_config.candidate_count",
        )


def _parse_modalities(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    where = "generation_config.response_modalities"
    if not isinstance(value, list):
        raise invalid_argument(f"Invalid value at '{where}', {value!r}", where)
    modalities: set[str] = set()
    for index, item in enumerate(value):
        # Old official samples sent "Text","Image" and worked: case-insensitive (unverified).
        name = item.upper() if isinstance(item, str) else None
        if name not in _MODALITIES:
            at = f"{where}[{index}]"
            raise invalid_argument(
                f"Invalid value at '{at}' (type.googleapis.com/google.ai.generativelanguage."
                f"v1beta.GenerationConfig.Modality), {item!r}",
                at,
            )
        modalities.add(name)
    return frozenset(modalities)


def _parse_aspect_ratio(value: Any, model: GeminiModel) -> str:
    if value is None:
        return "1:1"
    if value not in model.ratios:
        # Exact wording of this rejection is not in the reference (unverified).
        raise invalid_argument(
            f"Unsupported aspect ratio {value!r} for models/{model.name}. "
            f"Supported values: {', '.join(model.ratios)}.",
            "generation_config.image_config.aspect_ratio",
        )
    return str(value)


def _parse_image_size(value: Any, model: GeminiModel) -> str:
    if not model.sizes:
        # gemini-2.5-flash-image silently ignores imageSize and always answers at about 1K.
        return "1K"
    if value is None:
        return "1K"
    if value not in model.sizes:
        # Values are case-sensitive: "1k" is rejected (reference: unverified, fakes reject it).
        raise invalid_argument(
            f"Unsupported image size {value!r} for models/{model.name}. "
            f"Supported values: {', '.join(model.sizes)}.",
            "generation_config.image_config.image_size",
        )
    return str(value)


# --- responses ------------------------------------------------------------------------------------


def usage_metadata(
    model: GeminiModel, request: GenerateRequest, *, image: bool, text_tokens: int
) -> dict[str, Any]:
    """Token accounting; input images are summed into one IMAGE entry, as the API aggregates."""
    prompt_text = max(1, request.prompt_chars // 4)
    prompt_images = INPUT_IMAGE_TOKENS * request.input_images
    prompt_details = [{"modality": "TEXT", "tokenCount": prompt_text}]
    if prompt_images:
        prompt_details.append({"modality": "IMAGE", "tokenCount": prompt_images})
    image_tokens = model.image_tokens[request.image_size] if image else 0
    output_details = []
    if text_tokens:
        output_details.append({"modality": "TEXT", "tokenCount": text_tokens})
    if image_tokens:
        output_details.append({"modality": "IMAGE", "tokenCount": image_tokens})
    prompt = prompt_text + prompt_images
    output = text_tokens + image_tokens
    usage: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output,
        "totalTokenCount": prompt + output + model.thoughts_tokens,
        "promptTokensDetails": prompt_details,
    }
    if output_details:
        usage["candidatesTokensDetails"] = output_details
    if model.thoughts_tokens:
        usage["thoughtsTokenCount"] = model.thoughts_tokens
    return usage


def prompt_usage(request: GenerateRequest) -> dict[str, Any]:
    """Usage for an answer that generated nothing (a blocked prompt, a partial stream chunk)."""
    text = max(1, request.prompt_chars // 4)
    images = INPUT_IMAGE_TOKENS * request.input_images
    details = [{"modality": "TEXT", "tokenCount": text}]
    if images:
        details.append({"modality": "IMAGE", "tokenCount": images})
    total = text + images
    return {"promptTokenCount": total, "totalTokenCount": total, "promptTokensDetails": details}


def image_part(mime_type: str) -> dict[str, Any]:
    return {
        "inlineData": {"mimeType": mime_type, "data": image_slot(0)},
        "thoughtSignature": THOUGHT_SIGNATURE,
    }


def answer_parts(request: GenerateRequest, mime_type: str) -> list[dict[str, Any]]:
    """The parts of a normal answer: text first, then the image, as the modalities allow."""
    if not request.wants_image:
        return [{"text": "Here is a description of the image you asked for, in words only."}]
    parts: list[dict[str, Any]] = []
    if request.wants_text:
        parts.append({"text": HELLO_TEXT})
    parts.append(image_part(mime_type))
    return parts


def candidate(parts: list[dict[str, Any]] | None, finish: str | None) -> dict[str, Any]:
    """One candidate; ``parts=None`` gives the empty content that blocked answers carry."""
    # Google prints proto fields in field-number order: parts (1) before role (2).
    entry: dict[str, Any] = {"content": {"parts": parts, "role": "model"} if parts else {}}
    if finish:
        entry["finishReason"] = finish
    entry["index"] = 0
    return entry


def response(
    candidates: list[dict[str, Any]] | None,
    usage: dict[str, Any],
    model: GeminiModel,
    response_id: str,
    **extra: Any,
) -> dict[str, Any]:
    doc: dict[str, Any] = {"candidates": candidates} if candidates is not None else {}
    doc.update(extra)
    doc.update(usageMetadata=usage, modelVersion=model.name, responseId=response_id)
    return doc


def text_token_count(parts: list[dict[str, Any]]) -> int:
    return sum(max(1, len(part["text"]) // 4) for part in parts if "text" in part)


def success_doc(
    model: GeminiModel, request: GenerateRequest, mime_type: str, response_id: str
) -> dict[str, Any]:
    """A whole generateContent answer (image placeholder in slot 0 when there is an image)."""
    parts = answer_parts(request, mime_type)
    usage = usage_metadata(
        model, request, image=request.wants_image, text_tokens=text_token_count(parts)
    )
    return response([candidate(parts, "STOP")], usage, model, response_id)


def success_chunks(
    model: GeminiModel, request: GenerateRequest, mime_type: str, response_id: str
) -> list[dict[str, Any]]:
    """The same answer as stream chunks: one part per chunk, the image whole in one chunk, and
    finishReason plus the full usage on the last chunk only (reference §5)."""
    parts = answer_parts(request, mime_type)
    chunks = [
        response([candidate([part], None)], prompt_usage(request), model, response_id)
        for part in parts[:-1]
    ]
    full = usage_metadata(
        model, request, image=request.wants_image, text_tokens=text_token_count(parts)
    )
    chunks.append(response([candidate(parts[-1:], "STOP")], full, model, response_id))
    return chunks
