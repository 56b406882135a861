"""A Gemini conversation (`contents`) checked, and seen the two ways providers need it.

- Every provider gets the last user turn's text as the prompt, and as input images the latest
  image of the earlier turns (the one being edited) followed by the last turn's own. That is
  how a provider without turns serves iterative editing.
- Gemini gets the whole conversation (`for_gemini`), every earlier image and thoughtSignature
  included.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from imagegate.core.errors import InvalidRequest
from imagegate.core.imageinfo import NotAnImage, sniff
from imagegate.core.request import InputImage
from imagegate.surfaces.gemini.wire import Content, Part

MAX_IMAGES = 14  # reference images per request, Gemini 3's limit
# Google's documented stand-in for a thought signature the conversation never had (a turn made
# by another model or provider): Gemini 3 checks signatures on the model's image parts, and the
# gateway's answers carry none (unverified for image models; docs/gemini-surface.md).
STAND_IN_SIGNATURE = "context_engineering_is_the_way_to_go"

ImagesByPart = Mapping[tuple[int, int], InputImage]


def role_of(content: Content) -> str:
    return content.role or "user"


def checked_contents(contents: list[Content]) -> ImagesByPart:
    """The conversation's inline images by (turn, part), once every turn's shape is checked
    and every image is known to be one (by its bytes); at most MAX_IMAGES in all."""
    if not contents:
        raise InvalidRequest(
            "* GenerateContentRequest.contents: contents is not specified", param="contents"
        )
    images: dict[tuple[int, int], InputImage] = {}
    for turn, content in enumerate(contents):
        where = f"contents[{turn}]"
        if role_of(content) not in ("user", "model"):
            raise InvalidRequest(
                f"Please use a valid role: user, model (not {content.role!r}).",
                param=f"{where}.role",
            )
        if not content.parts:
            raise InvalidRequest(
                f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.",
                param=f"{where}.parts",
            )
        for index, part in enumerate(content.parts):
            at = f"{where}.parts[{index}]"
            if part.file_data is not None:
                raise InvalidRequest(
                    "fileData parts are not supported by this gateway: a file uploaded to"
                    " Google's Files API belongs to your Google project, which the gateway's"
                    " upstreams cannot read. Send the image inline (inlineData) instead.",
                    param=f"{at}.file_data",
                )
            if part.is_image:
                images[turn, index] = _checked_image(part, at)
    if len(images) > MAX_IMAGES:
        raise InvalidRequest(
            f"This request holds {len(images)} images; at most {MAX_IMAGES} images are accepted"
            " per request (reference images and the conversation's earlier images together).",
            param="contents",
        )
    return images


def _checked_image(part: Part, at: str) -> InputImage:
    assert part.inline_data is not None
    mime = part.inline_data.mime_type
    if not mime.lower().startswith("image/"):
        raise InvalidRequest(
            f"Unsupported MIME type {mime or '(none)'!r} for inline data: this gateway takes"
            " images only (PNG, JPEG, WebP or GIF).",
            param=f"{at}.inline_data.mime_type",
        )
    raw = decode_base64(part.inline_data.data, f"{at}.inline_data.data")
    try:
        info = sniff(raw)
    except NotAnImage as exc:
        info, reason = None, str(exc)
    else:
        reason = "too short to hold an image"
    if info is None:
        raise InvalidRequest(
            f"Unable to process input image at {at}: sent as {mime} but {reason}."
            " Send a PNG, JPEG, WebP or GIF image.",
            param=f"{at}.inline_data.data",
        )
    return InputImage(raw, info.mime_type)


def decode_base64(text: str, where: str) -> bytes:
    """Proto-JSON bytes: either base64 alphabet, padding optional (google-genai sends URL-safe)."""
    standard = text.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(
            f"Invalid value at '{where}' (TYPE_BYTES), Base64 decoding failed for {text[:40]!r}",
            param=where,
        ) from None


def instruction(contents: list[Content], max_chars: int) -> str:
    """The last user turn's text: the instruction every provider gets as its prompt."""
    last = len(contents) - 1
    if role_of(contents[last]) != "user":
        raise InvalidRequest(
            "The conversation must end with a user turn: the instruction to carry out.",
            param=f"contents[{last}].role",
        )
    texts = [p.text for p in contents[last].parts if p.text and not p.thought]
    prompt = "\n".join(texts)
    if not prompt.strip():
        raise InvalidRequest(
            "The last user turn has no text: say what to draw, or what to change in the image.",
            param=f"contents[{last}].parts",
        )
    if len(prompt) > max_chars:
        raise InvalidRequest(
            f"The instruction is {len(prompt)} characters; the maximum is {max_chars}.",
            param=f"contents[{last}].parts",
        )
    return prompt


def input_images(contents: list[Content], images: ImagesByPart) -> tuple[InputImage, ...]:
    """The latest image before the last turn (the one being edited), then the last turn's own.

    A provider without multi-turn editing is served this way: the instruction applied to the
    latest image. Gemini gets the whole conversation instead (`for_gemini`).
    """
    last = len(contents) - 1
    earlier = [key for key in images if key[0] < last]
    latest = [images[max(earlier)]] if earlier else []
    return (*latest, *(image for key, image in images.items() if key[0] == last))


def for_gemini(content: Content) -> dict[str, Any]:
    """The turn as Gemini gets it, camelCase; a model image without a signature gets one."""
    dumped: dict[str, Any] = content.model_dump(by_alias=True, exclude_none=True)
    if role_of(content) == "model":
        for part, out in zip(content.parts, dumped["parts"], strict=True):
            if part.is_image and part.thought_signature is None:
                out["thoughtSignature"] = STAND_IN_SIGNATURE
    return dumped
